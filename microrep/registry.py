"""Registries of model parts: name -> entry, one per kind (loss, pooling, head).

Why: a setting such as `--similarity` or `--head` names a part; the code that
uses it looks the part up here instead of branching on names, so a new part is
one `register` call (in microrep or in a user's own script) and nothing else
changes. The registries live on the ground floor, so settings (config) can check
a name against them; each is filled by the module that defines its parts
(`home`), which is imported the first time the registry is asked.
"""

import importlib

from microrep.errors import ConfigError


class Registry:
    """Named entries of one kind of part, filled by `register` (lazily, from `home`)."""

    def __init__(self, kind, home):
        self.kind, self.home = kind, home
        self._entries = {}

    def register(self, name, entry=None):
        """Add `entry` under `name` (or use as a decorator); a taken name is refused."""
        def add(value):
            if name in self._entries and self._entries[name] is not value:
                raise ValueError(f"a {self.kind} named {name!r} is already registered")
            self._entries[name] = value
            return value

        return add if entry is None else add(entry)

    def unregister(self, name):
        """Remove an entry (a test's own part, say); unknown names are ignored."""
        self._entries.pop(name, None)

    def _loaded(self):
        importlib.import_module(self.home)  # registers the built-in entries (once)
        return self._entries

    def __getitem__(self, name):
        entries = self._loaded()
        if name not in entries:
            raise ConfigError(f"unknown {self.kind} {name!r}; registered: {', '.join(entries)}")
        return entries[name]

    def __contains__(self, name):
        return name in self._loaded()

    def __iter__(self):
        return iter(list(self._loaded()))

    def __len__(self):
        return len(self._loaded())

    def __repr__(self):
        return f"Registry({self.kind!r}: {', '.join(self._entries) or 'not loaded'})"


#: Pair losses (`--similarity`): microrep.nn.losses.LossEntry values.
LOSSES = Registry("loss", "microrep.nn.losses")
#: Poolings of VGG16 feature maps (`--pooling`): functions (name) -> Keras layer.
POOLINGS = Registry("pooling", "microrep.nn.pooling")
#: Heads on pooled features (`--head`): microrep.nn.heads.HeadEntry values.
HEADS = Registry("head", "microrep.nn.heads")
#: Who embeds an archive's parts (`embed --launcher`): functions EmbedJob -> summary dict.
LAUNCHERS = Registry("launcher", "microrep.launchers")
