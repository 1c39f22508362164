"""`edvr train`: the seed's EDVR training recipes in one loop.

config.py         TrainConfig (every default, commented), presets, resolution and checks
degrade.py        x265 / bicubic degradation of ground truth, once, into a cache
data.py           clips on disk, keyed random patches, the DataLoader
schedule.py       get_lr: cosine annealing with restarts (BasicSR's values)
checkpointing.py  checkpoints `enhance --model` loads, plus the state `--resume` needs
validation.py     whole-frame PSNR/SSIM of the network and of its input
runlog.py         log.jsonl, optional TensorBoard
losses.py         the pixel criteria (Charbonnier, squared error)
distributed.py    1 or N processes (torchrun): the process group and collective checks
loop.py           train(): setup, steps, validation and checkpoints, AMP
"""
