import evaluate
from evaluate.utils import launch_gradio_widget

module = evaluate.load("neurotrain/segmentation_map")
launch_gradio_widget(module)
