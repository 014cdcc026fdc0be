"""Facts shared across the package: special tokens, label values, tiling limits.

Every other module imports these names; none re-declares them.
"""

# Marker that records (LLaVA JSON schema) put in the text where an image goes.
IMAGE_MARKER = "<image>"

# Tokens the processor expands one IMAGE_MARKER into:
#   IMAGE_START_TOKEN + IMAGE_TOKEN * (tiles * tokens_per_tile) + IMAGE_END_TOKEN
IMAGE_TOKEN = "<|image_pad|>"
IMAGE_START_TOKEN = "<|image_start|>"
IMAGE_END_TOKEN = "<|image_end|>"
IMAGE_SPECIAL_TOKENS = (IMAGE_START_TOKEN, IMAGE_TOKEN, IMAGE_END_TOKEN)

# Label value ignored by torch's cross-entropy.
IGNORE_INDEX = -100

# GPT-oss harmony format special tokens, by text: their ids come from the tokenizer (o200k_harmony for GPT-oss;
# the tiny tokenizer assigns its own), so nothing here depends on one vocabulary.
HARMONY_START = "<|start|>"
HARMONY_END = "<|end|>"
HARMONY_MESSAGE = "<|message|>"
HARMONY_CHANNEL = "<|channel|>"
HARMONY_RETURN = "<|return|>"
HARMONY_CALL = "<|call|>"
HARMONY_CONSTRAIN = "<|constrain|>"
HARMONY_ENDOFTEXT = "<|endoftext|>"
HARMONY_SPECIAL_TOKENS = (
    HARMONY_START,
    HARMONY_END,
    HARMONY_MESSAGE,
    HARMONY_CHANNEL,
    HARMONY_RETURN,
    HARMONY_CALL,
    HARMONY_CONSTRAIN,
    HARMONY_ENDOFTEXT,
)

# Visual front-end (paper, section 3.3): up to 12 dynamic tiles plus a thumbnail. The tile size is the vision
# tower's input size (llava_medgpt.processing.geometry), not a constant.
MIN_TILES = 1
MAX_TILES = 12
