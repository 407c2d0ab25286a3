import evaluate
from evaluate.utils import launch_gradio_widget

module = evaluate.load("neurotrain/fid")
launch_gradio_widget(module)
