"""The Kubernetes renderer: the same stack model, rendered as manifests (docs/kubernetes.md)."""
