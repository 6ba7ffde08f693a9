"""3D scenes for synthetic pre-training: a seeded sampler of scene descriptions and renderers that turn them
into RGB plus depth, normals, instance and class masks.

    scene = sample_scene(SceneSamplerConfig(level="lv7"), seed=0, index=42)   # plain, JSON-serialisable data
    out = create_scene_renderer("torch").render(scene, 64, 64)                 # RenderOutput

Modules: `scene` (the data), `shapes` (shape kinds and object classes), `sampler` (levels lv0..lv7),
`geometry` (scene -> world meshes, camera maths), `textures`, `renderers` (torch, mitsuba, blender, blenderproc),
`supersample` (k x k renders -> output size), `writer` (tar shards). The training views of the shards are
`lab.data.scene_tasks` (data reading).
"""

from synth_render.scene3d.sampler import LEVELS, SceneSampler, SceneSamplerConfig, sample_scene, scene_sampler
from synth_render.scene3d.scene import Camera, CeilingLight, Light, Material, Room, Scene, SceneObject, TextureSpec

__all__ = [
    "LEVELS",
    "Camera",
    "CeilingLight",
    "Light",
    "Material",
    "Room",
    "Scene",
    "SceneObject",
    "SceneSampler",
    "SceneSamplerConfig",
    "TextureSpec",
    "sample_scene",
    "scene_sampler",
]
