"""xpt.render: headless pyrender renderer, camera rigs, scene building and the worker pool."""
