"""The synthetic demo's dataset module (ESPnet3 loads it when `data_src` is omitted): Kaldi
data dirs of the espeak-ng corpus (espnet_pcc.recipe.espnet3_data)."""
from espnet_pcc.recipe.espnet3_data import KaldiDirDataset as Dataset
from espnet_pcc.recipe.espnet3_data import SynthCorpusBuilder as DatasetBuilder

__all__ = ["Dataset", "DatasetBuilder"]
