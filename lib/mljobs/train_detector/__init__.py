"""The train-detector job: a torch object detector (torchvision's Faster R-CNN) trained on a frames table and its boxes."""
