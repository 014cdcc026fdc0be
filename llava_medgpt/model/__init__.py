from .configuration import MedGptConfig
from .modeling import MedGptForConditionalGeneration, MedGptPreTrainedModel

__all__ = ["MedGptConfig", "MedGptForConditionalGeneration", "MedGptPreTrainedModel"]
