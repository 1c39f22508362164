"""What the trainer's data loaders hand over: the clips to train and validate on, and the error
for data that cannot be used. Shared by folders and videos (`data`) and training packs (`packed`)."""

from __future__ import annotations

from dataclasses import dataclass

from models.errors import EdvrError


class DataError(EdvrError, ValueError):
    """Training data that cannot be found, paired or cropped; the message names the path."""


@dataclass
class Clips:
    """The training and the validation clips, and how their input was made."""

    train: list
    val: list
    degradation: str  # for the log


__all__ = ["Clips", "DataError"]
