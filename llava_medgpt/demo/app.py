"""The Gradio app behind `llava-medgpt-demo` (arguments and guarantees in cli.py).

Layout: uploads (images, DICOM) and the tile preview on the left, the conversation on the right. Files uploaded
since the last message are attached to the next one, before its text. The preview shows, for every image of the
conversation, the grid of 336-px tiles the processor cuts it into under the sample's tile budget (drawn on the
image) and the thumbnail tile; the harmony analysis channel streams into a collapsible "Reasoning" message above
the answer.
"""

import argparse
import atexit
import os
import shutil
import signal
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

PREVIEW_SIDE = 448  # longest side of a preview image, in pixels
GRID_COLOUR = (255, 196, 0)


def tile_overlay(image: Image.Image, cols: int, rows: int) -> Image.Image:
    """`image` scaled for display with the tile grid (cols x rows) drawn on it."""
    scale = PREVIEW_SIDE / max(image.size)
    preview = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    draw = ImageDraw.Draw(preview)
    width, height = preview.size
    for c in range(1, cols):
        draw.line([(c * width / cols, 0), (c * width / cols, height)], fill=GRID_COLOUR, width=2)
    for r in range(1, rows):
        draw.line([(0, r * height / rows), (width, r * height / rows)], fill=GRID_COLOUR, width=2)
    draw.rectangle([0, 0, width - 1, height - 1], outline=GRID_COLOUR, width=2)
    return preview


def tile_previews(chat, images: list[Image.Image], names: list[str]) -> list[tuple[Image.Image, str]]:
    """Gallery items: per image, its grid overlay and (when it has one) the thumbnail tile the model sees."""
    processor = getattr(chat.processor, "image_processor", None)
    if chat.model_type != "llava_medgpt" or processor is None:
        return [(image, f"{name} (tiled by {type(processor).__name__})") for image, name in zip(images, names)]
    from ..processing.tiling import tiles_for_grid

    items = []
    grids = processor.tile_grids_for_sample([image.size for image in images])
    for image, name, (cols, rows) in zip(images, names, grids):
        tiles = tiles_for_grid(cols, rows, processor.use_thumbnail)
        tokens = tiles * processor.tokens_per_tile
        items.append((tile_overlay(image, cols, rows),
                      f"{name}: {image.width}x{image.height}, {cols}x{rows} grid, {tiles} tile{'s' * (tiles != 1)}, "
                      f"{tokens} tokens"))
        if tiles > cols * rows:
            thumbnail = image.resize((processor.tile_size, processor.tile_size), Image.Resampling.BICUBIC)
            items.append((thumbnail, f"{name}: thumbnail tile"))
    return items


def _user_display(text: str, names: list[str]) -> dict:
    attached = f"[{', '.join(names)}]\n" if names else ""
    return {"role": "user", "content": attached + text}


def _assistant_display(reasoning: str, answer: str, done: bool) -> list[dict]:
    messages = []
    if reasoning:
        messages.append({"role": "assistant", "content": reasoning,
                         "metadata": {"title": "Reasoning", "status": "done" if done or answer else "pending"}})
    if answer or done:
        messages.append({"role": "assistant", "content": answer})
    return messages


def build_app(chat, max_new_tokens: int):
    import gradio as gr

    from ..chat.session import ChatSession, image_label
    from ..inference.streaming import GenerationSettings
    from ..processing.image_io import ImageLoadError, load_image

    def new_state() -> dict:
        return {"session": ChatSession(chat), "display": [], "names": []}

    def preview(files, state):
        state = state or new_state()
        session = state["session"]
        try:
            pending = [load_image(path) for path in files or []]
        except ImageLoadError as err:
            gr.Warning(str(err))
            return state, tile_previews(chat, session.images, state["names"])
        names = state["names"] + [image_label(path) for path in files or []]
        return state, tile_previews(chat, session.images + pending, names)

    def respond(question, files, state, effort, tokens, sample):
        state = state or new_state()
        session = state["session"]
        question = (question or "").strip()
        if not question:
            yield state["display"], state, files, "", gr.update()
            return
        session.reasoning_effort = effort if chat.harmony else None
        session.settings = GenerationSettings(max_new_tokens=int(tokens), do_sample=bool(sample))
        paths = list(files or [])
        names = [image_label(path) for path in paths]
        shown = state["display"] + [_user_display(question, names)]
        reasoning = answer = ""
        try:
            for delta in session.ask(question, paths):
                if delta.channel == "final":
                    answer += delta.text
                else:
                    reasoning += delta.text
                yield shown + _assistant_display(reasoning, answer, done=False), state, None, "", gr.update()
        except (ImageLoadError, ValueError) as err:
            gr.Warning(str(err))
            yield state["display"], state, files, question, gr.update()
            return
        state["display"] = shown + _assistant_display(reasoning.strip(), answer.strip(), done=True)
        state["names"] += names
        yield state["display"], state, None, "", tile_previews(chat, session.images, state["names"])

    def reset():
        return [], new_state(), None, []

    with gr.Blocks(analytics_enabled=False, title="MedGPT-oss demo") as app:
        state = gr.State(None)
        gr.Markdown(f"### MedGPT-oss demo: `{chat.model_type}` (research use only, not for clinical decisions)")
        with gr.Row():
            with gr.Column(scale=2):
                files = gr.File(label="Images or DICOM for the next message", file_count="multiple",
                                elem_id="upload")
                gallery = gr.Gallery(label="What the model sees: tile grid and thumbnail", elem_id="tiles",
                                     columns=2, height=420)
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(label="Conversation", elem_id="chat", height=480)
                question = gr.Textbox(label="Question", placeholder="Ask about the images...", elem_id="question",
                                      lines=2)
                with gr.Row():
                    send = gr.Button("Send", variant="primary", elem_id="send")
                    clear = gr.Button("New conversation", elem_id="reset")
                with gr.Accordion("Settings", open=False):
                    effort = gr.Radio(["low", "medium", "high"], value="medium", label="Reasoning effort (harmony)")
                    tokens = gr.Slider(16, 8192, value=max_new_tokens, step=16, label="Max new tokens")
                    sample = gr.Checkbox(False, label="Sample (default: greedy)")
        files.upload(preview, [files, state], [state, gallery])
        files.clear(preview, [files, state], [state, gallery])
        inputs = [question, files, state, effort, tokens, sample]
        outputs = [chatbot, state, files, question, gallery]
        send.click(respond, inputs, outputs)
        question.submit(respond, inputs, outputs)
        clear.click(reset, None, [chatbot, state, files, gallery])
    return app


def _private_temp_dir() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="llava-medgpt-demo-"))
    os.chmod(folder, 0o700)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def serve(args: argparse.Namespace) -> int:
    # Set before gradio is imported: it reads both at import time.
    temp_dir = _private_temp_dir()
    os.environ["GRADIO_TEMP_DIR"] = str(temp_dir)
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(SystemExit(0)))  # run the cleanup on SIGTERM
    import gradio as gr
    import torch

    from ..chat.session import load_chat_session_model

    torch.set_grad_enabled(False)
    chat = load_chat_session_model(args.model, device=args.device, dtype=args.dtype)
    app = build_app(chat, args.max_new_tokens)
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])  # local fonts: no font CDN request
    print(f"temporary folder for uploads: {temp_dir}", flush=True)
    try:
        app.queue().launch(server_name=args.host, server_port=args.port, share=False, inbrowser=False,
                           ssr_mode=False, pwa=False, mcp_server=False, show_error=True, theme=theme)
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    return 0
