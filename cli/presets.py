"""``m2f presets``: the model-zoo presets, one per line."""
HELP = "list the model-zoo presets (dataset-task-backbone)"


def add_arguments(p) -> None:
    pass


def run(args) -> int:
    from m2f.errors import require

    require("yaml", "model", "m2f presets")
    from m2f.model.presets import preset_names

    print("\n".join(preset_names()))
    return 0
