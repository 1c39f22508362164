"""Named EDVR checkpoints published by MMEditing and BasicSR: plain data plus a name lookup.

Every entry was checked against its publisher's own files (`source_doc`: repository + path).
Both publishers name files `<stem>-<first 8 hex digits of the file's SHA-256>.pth` (MMEditing
`tools/model_converters/publish_model.py`, BasicSR `scripts/publish_models.py`), so where no
full digest is published, `sha256` holds that 8-digit prefix.

Left out on purpose (not confirmable, see docs/MODELS.md, "Named checkpoints"): the original xinntao/EDVR
Google Drive files (no hash in their names), BasicSR's NTIRE19 "Stage2" models (no files
published), and the EDVR models BasicSR ships only as IconVSR components.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from models.errors import EdvrError

# Tasks, as the `task` field spells them.
TASKS = ("sr-x4", "sr-x4-blur", "deblur", "deblur-compression")

# BasicSR's "Pretrained Models" Google Drive folder, from docs/ModelZoo.md: the page to
# download from by hand when Google Drive refuses a scripted download.
BASICSR_DRIVE_FOLDER = "https://drive.google.com/drive/folders/15DgDtfaLASQ3iAPJEVHQF49g9msexECG"


@dataclass(frozen=True)
class PublishedScore:
    """A score as its publisher printed it.

    Args:
        dataset: test set, e.g. "REDS4" (clips 000, 011, 015, 020) or "Vid4".
        channel: "RGB" or "Y" (BT.601 luma), as published.
        psnr: dB.
        ssim: in [0, 1], or None where only PSNR was published.
        psnr_decimals: decimal places the PSNR was published with (BasicSR 2, MMEditing 4).
    """

    dataset: str
    channel: str
    psnr: float
    ssim: float | None = None
    psnr_decimals: int = 4

    def __str__(self) -> str:
        ssim = "" if self.ssim is None else f"/{self.ssim:.4f}"
        return f"{self.dataset} {self.channel} {self.psnr:.{self.psnr_decimals}f}{ssim}"


@dataclass(frozen=True)
class ZooEntry:
    """One downloadable checkpoint and the network configuration it needs.

    Args:
        name: registry name (`edvr enhance --model NAME`).
        task: one of TASKS.
        publisher: "MMEditing" or "BasicSR".
        url: direct download address.
        file_name: name of the file in the cache folder.
        sha256: full hex digest (64 digits) or the 8-digit prefix the file name carries.
        preset: `models.PRESETS` name the architecture starts from ("edvr-m" or "edvr-l").
        num_frame: input frames per output frame.
        scale: output size / input size (4 for SR, 1 for deblurring).
        hr_in: input is high-res (deblur tasks): features are extracted after a x4 stride.
        with_predeblur: predeblur module in front of feature extraction.
        with_tsa: temporal-spatial attention fusion (False: a 1x1 conv fusion).
        scores: published scores, best-known test set first.
        test_padding: temporal padding at clip ends the published scores used.
        source_doc: where the name, URL, hash, configuration and scores were confirmed.
        layout: checkpoint layout ("mmediting": state_dict/generator.*, "basicsr": params).
        size_mb: file size in MB when the publisher states it, else None.
        manual_url: page to download from by hand, when it differs from `url`.
        note: anything a user should know before relying on the entry.
    """

    name: str
    task: str
    publisher: str
    url: str
    file_name: str
    sha256: str
    preset: str
    num_frame: int
    scale: int
    hr_in: bool
    with_predeblur: bool
    with_tsa: bool
    scores: tuple[PublishedScore, ...]
    test_padding: str
    source_doc: str
    layout: str
    size_mb: float | None = None
    manual_url: str | None = None
    note: str = ""

    def model_overrides(self) -> dict:
        """Constructor arguments to apply on top of `preset`: `build_model(e.preset, **e.model_overrides())`."""
        return dict(num_frame=self.num_frame, scale=self.scale, hr_in=self.hr_in,
                    with_predeblur=self.with_predeblur, with_tsa=self.with_tsa)


class UnknownModelError(EdvrError, ValueError):
    """A name that is neither in the registry nor an existing file."""


_MMEDIT_BASE = "https://download.openmmlab.com/mmediting/restorers/edvr/"
_MMAGIC_DOCS = "open-mmlab/mmagic configs/edvr/README.md, configs/edvr/metafile.yml"
_MMEDIT_TEST = "test: open-mmlab/mmagic configs/_base_/models/base_edvr.py (reflection_circle, RGB, crop 0)"
# BasicSR files are published as Google Drive file ids; the URL form is the one BasicSR's own
# downloader (basicsr/utils/download_util.py download_file_from_google_drive) requests.
_GDRIVE = "https://docs.google.com/uc?export=download&id="
_BASICSR_IDS = "XPixelGroup/BasicSR scripts/download_pretrained_models.py"
_BASICSR_SCORES = "XPixelGroup/BasicSR docs/ModelZoo.md"


def _mmedit(name, stamp_hash, preset, with_tsa, psnr, ssim, source_doc, note=""):
    file_name = f"{name}_{stamp_hash}.pth"
    return ZooEntry(
        name=name, task="sr-x4", publisher="MMEditing", url=_MMEDIT_BASE + file_name,
        file_name=file_name, sha256=stamp_hash.rsplit("-", 1)[1], preset=preset, num_frame=5,
        scale=4, hr_in=False, with_predeblur=False, with_tsa=with_tsa,
        scores=(PublishedScore("REDS4", "RGB", psnr, ssim),), test_padding="reflection_circle",
        source_doc=source_doc, layout="mmediting", note=note)


def _basicsr(file_name, drive_id, task, preset, num_frame, scale, hr_in, with_predeblur, with_tsa,
             scores, test_padding, test_config, note=""):
    return ZooEntry(
        name=file_name.rsplit("-", 1)[0], task=task, publisher="BasicSR", url=_GDRIVE + drive_id,
        file_name=file_name, sha256=file_name.rsplit("-", 1)[1].removesuffix(".pth"), preset=preset,
        num_frame=num_frame, scale=scale, hr_in=hr_in, with_predeblur=with_predeblur,
        with_tsa=with_tsa, scores=scores, test_padding=test_padding,
        source_doc=f"{_BASICSR_IDS}; {_BASICSR_SCORES}; XPixelGroup/BasicSR {test_config}",
        layout="basicsr", manual_url=BASICSR_DRIVE_FOLDER, note=note)


MODEL_ZOO: tuple[ZooEntry, ...] = (
    # --- MMEditing (OpenMMLab): the seed's two checkpoints, then the later ones. ---
    _mmedit("edvrm_wotsa_x4_8x4_600k_reds", "20200522-0570e567", "edvr-m", False, 30.3430, 0.8664,
            f"seed README; {_MMAGIC_DOCS}; {_MMEDIT_TEST}"),
    _mmedit("edvrm_x4_8x4_600k_reds", "20200622-ba4a43e4", "edvr-m", True, 30.4194, 0.8684,
            "seed README; open-mmlab/mmagic configs/restorers/edvr/README.md before commit 0cfc3345; "
            + _MMEDIT_TEST,
            note="The seed's link. MMEditing replaced it on 2021-06-29 (commit 0cfc3345, PR #396) with "
                 "edvrm_x4_8x4_600k_reds_20210625, keeping the same published score."),
    ZooEntry(
        name="edvrm_x4_8x4_600k_reds_20210625", task="sr-x4", publisher="MMEditing",
        url=_MMEDIT_BASE + "edvrm_x4_8x4_600k_reds_20210625-e29b71b5.pth",
        file_name="edvrm_x4_8x4_600k_reds_20210625-e29b71b5.pth", sha256="e29b71b5",
        preset="edvr-m", num_frame=5, scale=4, hr_in=False, with_predeblur=False, with_tsa=True,
        scores=(PublishedScore("REDS4", "RGB", 30.4194, 0.8684),), test_padding="reflection_circle",
        source_doc=f"{_MMAGIC_DOCS}; {_MMEDIT_TEST}", layout="mmediting",
        note="The link MMEditing/MMagic publishes today for edvrm_x4_8x4_600k_reds."),
    _mmedit("edvrl_wotsa_c128b40_8x8_lr2e-4_600k_reds4", "20211228-d895a769", "edvr-l", False,
            31.0010, 0.8784, f"{_MMAGIC_DOCS}; {_MMEDIT_TEST}"),
    _mmedit("edvrl_c128b40_8x8_lr2e-4_600k_reds4", "20220104-4509865f", "edvr-l", True,
            31.0467, 0.8793, f"{_MMAGIC_DOCS}; {_MMEDIT_TEST}"),
    # --- BasicSR: official EDVR models converted from xinntao/EDVR. ---
    _basicsr("EDVR_M_x4_SR_REDS_official-32075921.pth", "1dd6aFj-5w2v08VJTq5mS9OFsD-wALYD6",
             "sr-x4", "edvr-m", 5, 4, False, False, True,
             (PublishedScore("REDS4", "RGB", 30.53, 0.8699, 2),), "reflection_circle",
             "options/test/EDVR/test_EDVR_M_x4_SR_REDS.yml"),
    _basicsr("EDVR_M_woTSA_x4_SR_REDS_official-1edf645c.pth", "1C_WdN-NyNj-P7SOB5xIVuHl4EBOwd-Ny",
             "sr-x4", "edvr-m", 5, 4, False, False, False, (), "reflection_circle",
             "options/train/EDVR/train_EDVR_M_x4_SR_REDS_woTSA.yml",
             note="BasicSR publishes no score for this model; its configuration is the one in "
                  "the woTSA training config."),
    _basicsr("EDVR_L_x4_SR_REDS_official-9f5f5039.pth", "127KXEjlCwfoPC1aXyDkluNwr9elwyHNb",
             "sr-x4", "edvr-l", 5, 4, False, False, True,
             (PublishedScore("REDS4", "RGB", 31.09, 0.8800, 2),), "reflection_circle",
             "options/test/EDVR/test_EDVR_L_x4_SR_REDS.yml"),
    _basicsr("EDVR_L_x4_SR_Vimeo90K_official-162b54e4.pth", "1aVR3lkX6ItCphNLcT7F5bbbC484h4Qqy",
             "sr-x4", "edvr-l", 7, 4, False, False, True,
             (PublishedScore("Vid4", "Y", 27.35, 0.8264, 2), PublishedScore("Vid4", "RGB", 25.83, 0.8077, 2)),
             "reflection_circle", "options/test/EDVR/test_EDVR_L_x4_SR_Vid4.yml"),
    _basicsr("EDVR_L_x4_SRblur_REDS_official-983d7b8e.pth", "1GZz_87ybR8eAAY3X2HWwI3L6ny7-5Yvl",
             "sr-x4-blur", "edvr-l", 5, 4, False, True, True,
             (PublishedScore("REDS4", "RGB", 28.88, 0.8361, 2),), "replicate",
             "options/test/EDVR/test_EDVR_L_x4_SRblur_REDS.yml"),
    _basicsr("EDVR_L_deblur_REDS_official-ca46bd8c.pth", "1_ma2tgHscZtkIY2tEJkVdU-UP8bnqBRE",
             "deblur", "edvr-l", 5, 1, True, True, True,
             (PublishedScore("REDS4", "RGB", 34.80, 0.9487, 2),), "replicate",
             "options/test/EDVR/test_EDVR_L_deblur_REDS.yml"),
    _basicsr("EDVR_L_deblurcomp_REDS_official-0e988e5c.pth", "1fEoSeLFnHSBbIs95Au2W197p8e4ws4DW",
             "deblur-compression", "edvr-l", 5, 1, True, True, True,
             (PublishedScore("REDS4", "RGB", 30.24, 0.8567, 2),), "replicate",
             "options/test/EDVR/test_EDVR_L_deblurcomp_REDS.yml"),
)


def find_model(name: str, registry: tuple[ZooEntry, ...] = MODEL_ZOO) -> ZooEntry | None:
    """The entry called `name` (exact, then case-insensitive), or None."""
    for entry in registry:
        if entry.name == name:
            return entry
    folded = name.casefold()
    matches = [entry for entry in registry if entry.name.casefold() == folded]
    return matches[0] if len(matches) == 1 else None


def close_names(name: str, registry: tuple[ZooEntry, ...] = MODEL_ZOO, limit: int = 3) -> list[str]:
    """Registry names that look like `name` (difflib, case-insensitive)."""
    by_folded = {entry.name.casefold(): entry.name for entry in registry}
    found = difflib.get_close_matches(name.casefold(), list(by_folded), n=limit, cutoff=0.5)
    return [by_folded[key] for key in found]
