"""What the tests share: tiny pipelines built from config, files they make, kernels and shells they drive."""
