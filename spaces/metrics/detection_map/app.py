import evaluate
from evaluate.utils import launch_gradio_widget

module = evaluate.load("neurotrain/detection_map")
launch_gradio_widget(module)
