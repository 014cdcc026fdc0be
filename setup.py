from setuptools import find_packages, setup

setup(
    name="llava_medgpt",
    version="0.1.0",
    description="Training and evaluation stack for MedGPT-oss: GPT-oss + CLIP-ViT-L/14@336 vision-language models",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["llava_medgpt", "llava_medgpt.*"]),
    include_package_data=True,
    package_data={
        "llava_medgpt.data.curate": ["configs/*.yaml", "prompts/*.txt"],
        "llava_medgpt.eval": ["paper_results.yaml"],
        "llava_medgpt.eval.tasks": ["configs/*.yaml"],
    },
    install_requires=[
        # Install torch first (README): a bare requirement may otherwise pull a multi-GB CUDA build.
        "torch>=2.6",
        "transformers>=5.23,<6",
        "deepspeed>=0.19.8",
        "peft>=0.21",
        "datasets>=5.2",
        "accelerate>=1.15",
        "pillow>=10",
        "pyyaml>=6",
        "safetensors>=0.4",
        "numpy>=1.26",
        "pydicom>=3.0",
        "tqdm>=4.66",
        "matplotlib>=3.8",  # evaluation chart (its bundled DejaVu fonts render every label glyph)
        "scikit-image>=0.24",  # the tiny preset's demo data uses the sample images scikit-image ships
    ],
    extras_require={
        # flash-attn cannot build without CUDA, and transformers refuses it for GPT-oss (attention sinks).
        "flash": ["flash-attn>=2.6"],
        # The web demo (llava-medgpt-demo). gradio caps pillow below 13.
        "demo": ["gradio>=6.31,<7"],
        # selenium drives Debian's chromium in the demo's browser test (scripts/setup.sh --tests installs it).
        "test": ["pytest>=8", "scipy>=1.11", "oss-harmony==0.0.11", "gradio>=6.31,<7",
                 "selenium>=4.30"],
        # Report metrics (docs/evaluation.md). They fetch their models from a hub on first use and, here, resolve to
        # torch 2.14.1 + CUDA wheels: install them where that is wanted, after torch.
        # Pretraining-data curation (llava_medgpt.data.curate): OCR with its models inside the wheel, perceptual
        # hashes, and scikit-image's face cascade.
        "curate": ["rapidocr-onnxruntime>=1.4.4", "imagehash>=4.3", "scikit-image>=0.24"],
        "clinical": ["radgraph>=0.1.18", "RaTEScore>=0.6", "RadEval>=2.2"],
    },
    # One line per command, each the same as its `python -m` form (llava_medgpt/cli.py).
    entry_points={
        "console_scripts": [
            "llava-medgpt-train=llava_medgpt.cli:train",
            "llava-medgpt-eval=llava_medgpt.cli:evaluate",
            "llava-medgpt-convert=llava_medgpt.cli:convert",
            "llava-medgpt-curate=llava_medgpt.cli:curate",
            "llava-medgpt-chat=llava_medgpt.cli:chat",
            "llava-medgpt-export=llava_medgpt.cli:export",
            "llava-medgpt-demo=llava_medgpt.cli:demo",
        ]
    },
)
