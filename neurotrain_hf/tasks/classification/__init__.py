"""Image classification: digits, MNIST, CIFAR, image folders, ImageNet-style folders, Hub datasets."""

from .. import TaskSpec, register_task

register_task(
    TaskSpec(
        name="classification",
        config="neurotrain_hf.tasks.classification.config:ClassificationConfig",
        task="neurotrain_hf.tasks.classification.task:ClassificationTask",
        sources="neurotrain_hf.tasks.classification.sources",
        description="Image classification (digits, MNIST, CIFAR, image folders, ImageNet-style folders, Hub).",
    )
)
