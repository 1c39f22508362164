"""`edvr eval`: PSNR/SSIM of restored clips against ground truth, as the papers compute them.

metrics.py   psnr, ssim, to_y, frame_metrics: pure functions on (h, w, 3) frames (also the
             trainer's validation)
sources.py   --gt / --pred / --lq paths -> clips (the layout of `clip_layout`), paired frame by frame
scoring.py   evaluate(): per-frame, per-clip and overall scores, in threads; table, JSON, CSV, plot

The Click command (`commands/evaluate.py`) only parses options, calls `evaluate` and reports.
"""
