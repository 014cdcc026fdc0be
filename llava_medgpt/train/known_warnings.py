"""Known third-party deprecation warnings, silenced where they are raised, in every training process.

Each entry names the message, category and module of one warning that our code cannot act on: DeepSpeed's ZeRO-3
calls torch collectives under their deprecated names (hundreds of times per stage), and transformers warns about
the LLaVA-style `--gradient_checkpointing` flags the launch scripts keep on purpose (LLaVA-OneVision's names). No
broader filter: any other warning, from these modules too, still shows.
"""

import warnings

KNOWN_WARNINGS: tuple[tuple[str, type[Warning], str], ...] = (
    # (message regex, category, module regex) as `warnings.filterwarnings` takes them
    (r"`torch\.distributed\.reduce_scatter_tensor` is deprecated", FutureWarning, r"torch\.distributed\.c10d_logger$"),
    (r"`torch\.distributed\.all_gather_into_tensor` is deprecated", FutureWarning, r"torch\.distributed\.c10d_logger$"),
    (r"`gradient_checkpointing` is deprecated", FutureWarning, r"transformers\.training_args$"),
    (r"`gradient_checkpointing_kwargs` is deprecated", FutureWarning, r"transformers\.training_args$"),
)


def filter_known_warnings() -> None:
    for message, category, module in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
