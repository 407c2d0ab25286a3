import evaluate
from evaluate.utils import launch_gradio_widget

module = evaluate.load("neurotrain/bleu")
launch_gradio_widget(module)
