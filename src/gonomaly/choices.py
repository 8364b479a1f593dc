"""Names of the scoring and training options, importable without torch (the CLI's --help)."""

SCORES = ("mse", "fused", "max", "topk")
MAP_SCORES = ("max", "topk")  # scores read off the (smoothed) anomaly map
ERROR_MAPS = ("l2", "ssim")
LOSSES = ("l2", "l2+ssim")
