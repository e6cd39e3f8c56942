"""Texts shared by the .rules tests: the issue's register statements, NNI's BN page example."""

from __future__ import annotations

# The register statements of issue 3, verbatim (the second one is a single line there).
ISSUE_REGISTER = (
    "register prune CustomizedModule {\n"
    "  p1 granularity=[1,-1]\n"
    "  p2 granularity=[1,-1]\n"
    "  _output_ align=p1 dims=[0] granularity=[-1,1]\n"
    "}\n"
    "register quantize CustomizedModule { _input_ granularity=[-1,1]; p1 granularity=[1,-1]; "
    "p2 granularity=[1,-1]; _output_ granularity=[-1,1] }\n"
)

# Conv-BN: the convs pruned channel-wise, each BN weight aligned to its conv.
BN_SEED = (
    "prune conv1.weight granularity=out_channel sparse_ratio=0.5\n"
    "prune conv2.weight granularity=out_channel sparse_ratio=0.5\n"
    "align bn1.weight with conv1.weight dims=[0] granularity=out_channel\n"
    "align bn2.weight with conv2.weight dims=[0] granularity=out_channel\n"
)

# The page's config_list, verbatim (its first config leaves the ratio to the reader).
PAGE_BN_ALIGNED_CONFIG_LIST = [
    {
        "op_names": ["conv1", "conv2"],
        "granularity": "out_channel",
    },
    {
        "op_names": ["bn1"],
        "target_settings": {
            "weight": {
                "align": {
                    "module_name": "conv1",
                    "target_name": "weight",
                    "dims": [0],
                },
                "granularity": "out_channel",
            }
        },
    },
    {
        "op_names": ["bn2"],
        "target_settings": {
            "weight": {
                "align": {
                    "module_name": "conv2",
                    "target_name": "weight",
                    "dims": [0],
                },
                "granularity": "out_channel",
            }
        },
    },
]
