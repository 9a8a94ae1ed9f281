"""The parts of the shapes model's training script (`python -m nbdiffuse.shapes.train`, in ../train.py).

    state.py       what a run starts from (a new run, --init, or a checkpoint to resume)
    models.py      the modules it trains, their optimizers and the EMA of their weights
    data.py        the rendered pool, its latents, and each step's batch, drawn from (seed, stage, step)
    loops.py       stage 1 (the VAE) and stage 2 (text encoder + UNet), and the two in order
    checkpoint.py  DIR/checkpoint: save and restore, so a stopped run goes on with --resume
    export.py      the diffusers folder that ships (EMA weights), and its adherence score
    report.py      TRAINING.md / training.json
    progress.py    what a run prints while it goes, and its deadline (--max-minutes)

Nothing here is imported by `import nbdiffuse`: torch and diffusers load only when training.
"""
