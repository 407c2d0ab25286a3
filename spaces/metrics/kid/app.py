import evaluate
from evaluate.utils import launch_gradio_widget

module = evaluate.load("neurotrain/kid")
launch_gradio_widget(module)
