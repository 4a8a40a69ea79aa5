"""One module per command: each chains the layers below into what `microrep COMMAND` runs."""
