"""The package's layers: keras_vit at the bottom, training and export beside each other above it,
the command line on top. Read from the source (every import, also inside functions)."""

import ast
import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def imported_modules(package):
    """`{file: {imported module names}}` of every .py file in `package`."""
    found = {}
    for root, _, names in os.walk(os.path.join(REPO_ROOT, package)):
        for name in names:
            if not name.endswith(".py"):
                continue
            path = os.path.join(root, name)
            with open(path) as file:
                tree = ast.parse(file.read(), path)
            modules = set()
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    modules.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    modules.add(node.module)
            found[os.path.relpath(path, REPO_ROOT)] = modules
    return found


def arrows(package, into):
    return sorted(
        f"{file} imports {module}"
        for file, modules in imported_modules(package).items()
        for module in modules
        if module == into or module.startswith(into + ".")
    )


def test_the_model_library_imports_neither_training_nor_export():
    assert arrows("keras_vit", "keras_vit.training") == [] and arrows("keras_vit", "keras_vit.export") == []


def test_export_never_imports_training():
    assert arrows("export", "keras_vit.training") == []


def test_nothing_imports_the_folders_as_top_level_packages():
    """training/ and export/ install as keras_vit.training and keras_vit.export only."""
    found = [arrow for package in ("keras_vit", "training", "export", "tests", "bench")
             for into in ("training", "export") for arrow in arrows(package, into)]
    assert found == []


def test_every_package_folder_installs_under_keras_vit():
    """setup.cfg lists each package by name (package_dir maps the folders): a new sub-package
    folder that is not listed would be missing from a wheel."""
    import configparser

    config = configparser.ConfigParser()
    config.read(os.path.join(REPO_ROOT, "setup.cfg"))
    listed = set(config["options"]["packages"].split())
    folders = {"keras_vit": "keras_vit", "training": "keras_vit.training", "export": "keras_vit.export"}
    expected = set()
    for folder, name in folders.items():
        for root, _, files in os.walk(os.path.join(REPO_ROOT, folder)):
            if "__init__.py" in files:
                relative = os.path.relpath(root, os.path.join(REPO_ROOT, folder))
                expected.add(name if relative == "." else name + "." + relative.replace(os.sep, "."))
    assert listed == expected
    assert all(name == "keras_vit" or name.startswith("keras_vit.") for name in listed)


def test_no_command_imports_another_and_the_library_imports_no_command():
    commands = imported_modules(os.path.join("training", "commands"))
    assert sorted(f"{file} imports {m}" for file, modules in commands.items() for m in modules
                  if m.startswith("keras_vit.training.commands") or m == "keras_vit.training.cli") == []
    entry_points = (os.path.join("training", "cli.py"), os.path.join("training", "__main__.py"))
    library = {file: modules for file, modules in imported_modules("training").items()
               if not file.startswith(os.path.join("training", "commands")) and file not in entry_points}
    assert sorted(f"{file} imports {m}" for file, modules in library.items() for m in modules
                  if m.startswith("keras_vit.training.commands") or m == "keras_vit.training.cli") == []


def test_the_structure_check_sees_imports_inside_functions():
    """The checks above would pass on an empty scan: this one proves the scan reads function bodies."""
    modules = imported_modules("training")[os.path.join("training", "commands", "export.py")]
    assert "keras_vit.export.bundle" in modules and "keras_vit.training.evaluation" in modules


def test_the_wheel_installs_one_top_level_package(tmp_path):
    """What `pip install` puts into site-packages: keras_vit (with keras_vit.training and
    keras_vit.export inside it) and its metadata, nothing named `training` or `export`."""
    import glob
    import subprocess
    import sys
    import zipfile

    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           REPO_ROOT, "-w", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    names = zipfile.ZipFile(glob.glob(str(tmp_path / "*.whl"))[0]).namelist()
    assert {name.split("/")[0] for name in names} == {"keras_vit", "keras_vit-0.1.0.dist-info"}
    for module in ("training/cli.py", "training/commands/train.py", "export/tflite.py", "export/choices.py",
                   "layers/patches.py", "explain/maps.py", "console.py"):
        assert f"keras_vit/{module}" in names
    entry_points = zipfile.ZipFile(glob.glob(str(tmp_path / "*.whl"))[0]).read(
        "keras_vit-0.1.0.dist-info/entry_points.txt").decode()
    assert "keras-vit = keras_vit.training.cli:main" in entry_points
