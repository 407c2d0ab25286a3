"""Image classification: digits, MNIST, CIFAR, image folders, ImageNet-style folders, Hub datasets."""

from .. import TaskSpec

SPEC = TaskSpec(
    name="classification",
    task="neurotrain_hf.tasks.classification.task:ClassificationTask",
    training="neurotrain_hf.tasks.classification.config:ClassificationConfig",
    dataset="neurotrain_hf.tasks.classification.config:ClassificationDataset",
    augmentation="neurotrain_hf.tasks.classification.config:ClassificationAugmentation",
    sources="neurotrain_hf.tasks.classification.sources",
    models="neurotrain_hf.tasks.classification.models",
    default_model="simple_cnn",
    description="Image classification (digits, MNIST, CIFAR, image folders, ImageNet-style folders, Hub).",
)
