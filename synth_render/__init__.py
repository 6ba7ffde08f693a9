"""synth_render: deterministic synthetic pre-training data.

Renderers are registered by name (`synth_render.registry.RENDERERS`); each turns (seed, index) into one
annotated sample, and `synth_render.dataset.render_dataset` writes them as verified shards with a manifest.
"""
