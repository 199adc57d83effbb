"""Parameter-efficient fine-tuning with Hugging Face PEFT's names.

* LoRA (Hu et al. 2021): ``LoraConfig``, ``get_peft_model``, ``PeftModel.merge_and_unload``
  (``lora.py``);
* Houlsby adapters (Houlsby et al. 2019): ``AdapterConfig`` (``adapters.py``);
* LoReFT (Wu et al. 2024): ``ReftConfig``, ``LoreftIntervention`` (``reft.py``, pyreft's names);
* ``PeftModel``: ``print_trainable_parameters``, ``save_pretrained``, ``from_pretrained``,
  ``unload`` (``peft_model.py``).
"""
from .adapters import AdapterConfig, HoulsbyAdapter
from .lora import LoraConfig, LoraLinear
from .peft_model import CONFIG_NAME, WEIGHTS_NAME, PeftModel, config_from_dict, get_peft_model
from .reft import LoreftIntervention, LowRankRotateLayer, ReftConfig

__all__ = ["LoraConfig", "LoraLinear", "AdapterConfig", "HoulsbyAdapter", "ReftConfig", "LoreftIntervention",
           "LowRankRotateLayer", "PeftModel", "get_peft_model", "config_from_dict", "CONFIG_NAME", "WEIGHTS_NAME"]
