"""microrep: learned microstructure representations with a Siamese VGG16.

A reference implementation of Sardeshmukh, Reddy, Gautham and Bhattacharyya,
"Towards better microstructure representations using deep learning"
(MRS Communications): a Siamese network with a shared VGG16 tower trained under
contrastive loss on pairs of SEM micrographs, with PCA and SVM analysis of the
learned embeddings.
"""

__version__ = "0.1.0"
