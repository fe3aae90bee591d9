"""MTL and texture references as exporters write them: options, backslashes, case, paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xpt.toolkit.meshes.load import asset_file_name, load_mesh

TEXTURE = (np.arange(48, dtype=np.uint8).reshape(4, 4, 3) * 5).astype(np.uint8)
QUAD = """mtllib {mtllib}
v 0 0 0
v 1 0 0
v 1 1 0
v 0 1 0
vt 0 0
vt 1 0
vt 1 1
vt 0 1
usemtl wood
f 1/1 2/2 3/3
f 1/1 3/3 4/4
"""


def write_model(folder: Path, map_kd: str, texture: str, mtllib: str = "model.mtl") -> Path:
    """``folder/model.obj`` naming ``mtllib``, whose ``map_Kd`` line has ``map_kd``'s
    arguments; the image is written at ``folder/texture`` and the MTL at ``model.mtl``."""
    folder.mkdir(parents=True)
    (folder / "model.obj").write_text(QUAD.format(mtllib=mtllib))
    mtl = folder / "materials" / "model.mtl" if "/" in mtllib or "\\" in mtllib else None
    mtl = mtl or folder / "model.mtl"
    mtl.parent.mkdir(exist_ok=True)
    mtl.write_text(f"newmtl wood\r\nKd 1 1 1\r\nmap_Kd {map_kd}\r\n")  # Windows line ends
    (folder / texture).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(TEXTURE).save(folder / texture)
    return folder / "model.obj"


def texture_of(path: Path) -> np.ndarray | None:
    loaded = load_mesh(path)
    (mesh,) = loaded.scene.geometry.values()
    image = mesh.visual.material.image
    assert loaded.warnings == []
    return None if image is None else np.asarray(image.convert("RGB"))


# map_Kd arguments as exporters write them -> where the file really is
WILD = {
    "options+backslash+case": ("-s 1 1 1 -bm 0.5 ..\\Textures\\Wood.PNG", "textures/wood.png"),
    "options on/off": ("-clamp on -blendu off Textures\\WOOD.png", "textures/wood.png"),
    "windows absolute": ("C:\\Users\\artist\\Desktop\\Wood.png", "wood.png"),
    "posix absolute": ("/home/artist/project/maps/wood.png", "wood.png"),
    "spaces": ("-o 0.5 0.5 maps/old wood.png", "maps/old wood.png"),
    "quoted": ('"maps\\old wood.png"', "maps/Old Wood.png"),
}


@pytest.mark.parametrize("case", sorted(WILD))
def test_texture_references_from_the_wild_find_their_image(tmp_path: Path, case: str) -> None:
    map_kd, texture = WILD[case]
    path = write_model(tmp_path / "chair" / "m1", map_kd, texture)
    image = texture_of(path)
    assert image is not None and np.array_equal(image, TEXTURE)


def test_material_library_with_backslash_and_other_case(tmp_path: Path) -> None:
    path = write_model(tmp_path / "m", "wood.png", "wood.png", mtllib="Materials\\Model.MTL")
    assert np.array_equal(texture_of(path), TEXTURE)


def test_missing_texture_warning_says_what_was_tried(tmp_path: Path) -> None:
    path = write_model(tmp_path / "m", "-s 1 1 1 ..\\Textures\\Wood.PNG", "unrelated.png")
    loaded = load_mesh(path)
    assert loaded.warnings == [
        "texture '-s 1 1 1 ..\\Textures\\Wood.PNG' (map_Kd in model.mtl) not found (tried "
        "../Textures/Wood.PNG, Textures/Wood.PNG, Wood.PNG from the mesh's folder, "
        "any letter case)"
    ]
    (mesh,) = loaded.scene.geometry.values()
    assert mesh.visual.material.image is None
    assert list(mesh.visual.material.diffuse) == [255, 255, 255, 255]


def test_absolute_path_outside_the_asset_root_is_not_read(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere" / "secret.png"
    elsewhere.parent.mkdir()
    Image.fromarray(255 - TEXTURE).save(elsewhere)
    path = write_model(tmp_path / "data" / "m", str(elsewhere), "unrelated.png")
    loaded = load_mesh(path)
    root = (tmp_path / "data").resolve()
    assert loaded.warnings == [
        f"texture '{elsewhere}' (map_Kd in model.mtl) not found (tried {elsewhere} "
        f"(outside {root}), secret.png from the mesh's folder, any letter case)"
    ]


@pytest.mark.parametrize(
    ("reference", "name"),
    [
        ("wood.png", "wood.png"),
        ("-s 1 1 1 ..\\T\\w.png", "../T/w.png"),
        ("-mm 0 1 -t 1 w.png", "w.png"),
        ("-bm 0.3 my file.png", "my file.png"),
        ("-s 2 w.png", "w.png"),
        ('"a b.png"', "a b.png"),
        ("-s", "-s"),  # a lone word is the name, whatever it looks like
    ],
)
def test_asset_file_name_skips_options(reference: str, name: str) -> None:
    assert asset_file_name(reference) == name
