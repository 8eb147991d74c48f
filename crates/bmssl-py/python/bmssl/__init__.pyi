from os import PathLike
from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

_Path = Union[str, PathLike]

class BmsslError(ValueError): ...

class AdaptedModel:
    @property
    def ways(self) -> int: ...
    def predict(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]: ...
    def predict_proba(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]: ...

class Model:
    @property
    def path(self) -> str: ...
    @property
    def image_shape(self) -> Tuple[int, int, int]: ...
    @property
    def arch(self) -> Dict[str, Any]: ...
    @property
    def inner_steps(self) -> int: ...
    @property
    def inner_lr(self) -> float: ...
    def embed(
        self,
        x: npt.NDArray[np.float32],
        features: Literal["backbone", "projection"] = "backbone",
        batch_norm: Literal["set", "batch"] = "set",
        batch_size: int = 256,
    ) -> npt.NDArray[np.float32]: ...
    def adapt(
        self,
        support_x: npt.NDArray[np.float32],
        support_y: Union[npt.NDArray[np.integer], Sequence[int]],
        steps: Optional[int] = None,
        lr: Optional[float] = None,
        head: Literal["zero", "proto"] = "zero",
    ) -> AdaptedModel: ...

def load(path: _Path) -> Model: ...
def evaluate(
    model: Union[Model, _Path],
    dataset: str = "omniglot",
    split: str = "test",
    ways: int = 5,
    shots: int = 1,
    queries: int = 15,
    episodes: int = 2000,
    mode: Literal["adapt", "proto"] = "adapt",
    seed: int = 0,
    data_dir: Optional[_Path] = None,
    rotations: bool = True,
) -> Dict[str, Any]: ...
def train(config: Union[Dict[str, Any], _Path], run_dir: _Path, data_dir: Optional[_Path] = None) -> str: ...
