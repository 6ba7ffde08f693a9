"""Moved to `synth_render.text.question_sets` (building question sets from the synthetic world is synthetic data
generation); this path and `python -m lab.eval.pfgen.lab_sets` are kept for one release."""

import sys

from synth_render.text.question_sets import (  # noqa: F401
    FORMAT_VERSION,
    MANIFEST,
    QUESTION_MAKERS,
    LabQuestion,
    QuestionDraft,
    add_build_set_arguments,
    build_lab_set,
    build_question,
    make_generators,
    main,
    run_build_set,
    write_lab_set,
)

if __name__ == "__main__":
    sys.exit(main())
