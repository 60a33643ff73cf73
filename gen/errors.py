"""User-facing errors: one message naming the layer and the field (SPEC section 5)."""

__all__ = ["NnaccelError", "ModelError", "UsageError", "ToolError"]


class NnaccelError(Exception):
    """Base of every error the CLI reports as a one-line message with exit status 2."""

    exit_status = 2


class ModelError(NnaccelError):
    """A model file is wrong. ``layer`` is None for model-level fields."""

    def __init__(self, layer, field, message):
        self.layer, self.field, self.message = layer, field, message
        where = f"layer {layer!r}, field {field!r}" if layer is not None else f"field {field!r}"
        super().__init__(f"{where}: {message}")


class UsageError(NnaccelError):
    """A command-line option or input file is wrong."""


class ToolError(NnaccelError):
    """An external tool (Verilator, yosys, nextpnr, a compiler) is missing or failed."""

    exit_status = 3
