# Fits stage: sqrt(alpha t^2 + beta t + eps^2) fitted to every distance curve, and the
# Lyapunov bounds checked against it.


rule fits_divergence:
    input:
        code=rule_inputs("fits"),
        distances=DISTANCES.path(),
        exponents=EXPONENTS.path(),
        # λ1 at every step: the upper bound checked between the readouts too
        lambda1=LAMBDA1.path(),
    output:
        fits=FITS.path(),
        bounds=BOUNDS.path(),
    log:
        "logs/fits/{run}.log",
    wildcard_constraints:
        run=plan.wildcard_choice(REFERENCES),
    conda:
        CONDA_ENV
    resources:
        runtime=lambda wildcards: RESOURCES.runtime("fits", wildcards.run),
        mem_mb=lambda wildcards: RESOURCES.mem_mb("fits", wildcards.run),
    shell:
        "python -m chaosgd.fits --distances {input.distances} --exponents {input.exponents}"
        " --lambda1 {input.lambda1} --out-fits {output.fits} --out-bounds {output.bounds} > {log} 2>&1"


rule fits_all:
    input:
        expand(rules.fits_divergence.output, run=REFERENCES),
