"""Where images come from: every data set a config can name (``data.name``), each loader
registered in :data:`DATASETS` by its module below."""

from simclr.data.sources import image_folders, imagenet, streaming, synthetic, torchvision_sets
from simclr.data.sources.catalogue import DATASETS, Source, load_dataset, loader_options
from simclr.data.sources.image_folders import load_image_folder, scan_class_folders
from simclr.data.sources.imagenet import load_imagenet
from simclr.data.sources.synthetic import load_digits, load_fake
from simclr.data.sources.torchvision_sets import load_cifar10, load_cifar100, load_stl10

__all__ = [
    "DATASETS",
    "Source",
    "image_folders",
    "imagenet",
    "load_cifar10",
    "load_cifar100",
    "load_dataset",
    "load_digits",
    "load_fake",
    "load_image_folder",
    "load_imagenet",
    "load_stl10",
    "loader_options",
    "scan_class_folders",
    "streaming",
    "synthetic",
    "torchvision_sets",
]
