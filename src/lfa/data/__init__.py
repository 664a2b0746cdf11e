"""The data path: subsets, folds and packed datasets (:mod:`~lfa.data.datasets`), verified downloads, the seed's
count tables, batched augmentation and model-ready batches on the device."""
