"""X/Y/Z plots: a grid of requests that differ along A1111's axes, painted through `painting.session.render`."""
