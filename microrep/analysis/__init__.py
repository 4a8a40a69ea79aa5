"""Analysis of embeddings: PCA, SVM cross-validation, baselines and figures."""
