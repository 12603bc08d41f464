"""The code's shape: registries complete in a fresh interpreter, options refused when the config is resolved,
a fast ``selfsup --help``, one layer-alias resolver, one pairing function per kind of method."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import selfsup
from selfsup import config as C
from selfsup.cli import app
from selfsup.errors import ConfigError
from selfsup.methods import METHODS, MethodKind, SSLModel, get_method, resolve_layer
from selfsup.models import build_backbone

runner = CliRunner()


def _fresh(code: str) -> str:
    """Run ``code`` in a new interpreter (nothing imported before it) and return what it prints."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.slow
def test_registries_are_complete_in_a_fresh_interpreter():
    code = (
        "import sys\n"
        "from selfsup.models import build_backbone\n"
        "from selfsup.data import list_datasets\n"
        "from selfsup.views import build_views\n"
        "print('selfsup.pde' in sys.modules)\n"  # importing the registries does not import pde
        "print(build_backbone('pde2d', (3, 64, 128)).out_dim)\n"
        "print(sorted(r['name'] for r in list_datasets() if r['name'].startswith('pde')))\n"
        "print(type(build_views('pde', (3, 40, 32), equation='kdv')).__name__)\n"
    )
    assert _fresh(code).splitlines() == ["False", "64", "['pde-gen:PATH', 'pde:PATH']", "PDEViews"]


def test_unknown_plugged_names_still_get_did_you_mean():
    with pytest.raises(ConfigError, match="Did you mean 'pde2d'"):
        build_backbone("pde2e", (3, 8, 8))
    with pytest.raises(ConfigError, match="Did you mean 'pde-gen"):
        C.resolve(None, ["data.dataset=pde-gne:kdv"])


@pytest.mark.slow
def test_help_does_not_import_torch_or_h5py():
    code = (
        "import sys, selfsup.cli\nprint(sorted(m for m in ('torch', 'h5py', 'optuna') if m in sys.modules))"
    )
    assert _fresh(code) == "[]"
    out = subprocess.run(
        [sys.executable, "-m", "selfsup", "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and "train" in out.stdout and "pde" in out.stdout


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["method.params.cov_coef=2"], r"'method.params'.*no option 'cov_coef'.*Did you mean 'cov_coeff'"),
        (["method.params.cov_coeff=abc"], r"option 'cov_coeff' must be float"),
        (["method.name=simclr", "method.params.variant=cube"], r"option 'variant' must be"),
        (["method.name=byol", "method.params.temperature=0.1"], r"method 'byol' has no option 'temperature'"),
        (["method.name=simsiam", "method.params.lambd=1"], r"method 'simsiam' has no option 'lambd'"),
        (["model.backbone_args.widht=8"], r"'model.backbone_args'.*no option 'widht'.*Did you mean 'width'"),
        (["model.backbone_args.width=wide"], r"option 'width' must be int"),
        (
            ["data.view_args.max_shfit=0.1"],
            r"'data.view_args'.*view recipe 'signal'.*Did you mean 'max_shift'",
        ),
        (["data.dataset=digits", "data.view_args.blur_prob=1"], r"Did you mean 'blur_p'"),
        (["data.views=identity", "data.view_args.noise=1"], r"view recipe 'identity' has no option 'noise'"),
    ],
)
def test_bad_free_form_options_fail_when_the_config_is_resolved(overrides, message):
    with pytest.raises(ConfigError, match=message):
        C.resolve(None, overrides)


def test_cli_refuses_a_misspelt_method_parameter_with_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["train", "--quiet", "method.params.cov_coef=2"])
    assert res.exit_code == 2
    assert res.output.startswith("error:") and "Did you mean 'cov_coeff'" in res.output
    assert "Traceback" not in res.output and not (tmp_path / "runs").exists()  # nothing was started


def test_diet_without_n_train_is_a_config_error():
    with pytest.raises(ConfigError, match="n_train"):
        SSLModel(get_method("diet"), build_backbone("mlp", (4,), hidden="8"))


def test_resolve_layer_aliases():
    names = ["stem", "layer1", "pool", "proj1", "proj2"]
    assert resolve_layer(None, names) == resolve_layer("backbone", names) == "pool"
    assert resolve_layer("projector", names) == "proj2" and resolve_layer("layer1", names) == "layer1"
    assert resolve_layer("projector", ["stem", "pool"]) == "pool"  # no projector: the backbone output
    with pytest.raises(ConfigError, match="Did you mean 'proj2'"):
        resolve_layer("proj3", names)


def test_every_kind_of_method_defines_its_loss():
    kinds = {type(r.kind) for r in METHODS.values()}
    assert all(k.loss is not MethodKind.loss for k in kinds)
    modules = {k.__module__.rsplit(".", 1)[1] for k in kinds}  # one module per kind of method
    assert modules == {"pairwise", "distill", "moco", "dino", "swav", "classify", "lejepa", "sie", "masked"}
    torch.manual_seed(0)
    views = [torch.randn(8, 4), torch.randn(8, 4)]
    for name in ("byol", "simsiam"):  # both directions of the pair: BYOL's symmetrised loss L + L~
        m = SSLModel(get_method(name), build_backbone("mlp", (4,), hidden="8"), "16-8", "16-8")
        loss, _ = m.loss(views, torch.arange(8))
        z = [m.projector(m.backbone(v)) for v in views]
        if m.target is not None:
            z = [m.target["projector"](m.target["backbone"](v)) for v in views]
        p = [m.predictor(m.projector(m.backbone(v))) for v in views]
        fn = get_method(name).criterion
        assert loss.item() == pytest.approx((fn(p[0], z[1]) + fn(p[1], z[0])).item(), rel=1e-6)


def test_a_recipe_outside_the_table_is_checked_against_its_own_criterion():
    import dataclasses

    recipe = dataclasses.replace(get_method("vicreg"), name="my-vicreg")
    backbone = build_backbone("mlp", (4,), hidden="8")
    assert SSLModel(recipe, backbone, "8-8", params={"cov_coeff": 2.0}).params["cov_coeff"] == 2.0
    with pytest.raises(ConfigError, match="method 'my-vicreg' has no option 'cov_coef'"):
        SSLModel(recipe, backbone, "8-8", params={"cov_coef": 2.0})


def test_no_module_of_the_package_imports_itself_back():
    # the layers contract (lint-imports) orders packages; this also catches cycles inside one package.
    # grimp is import-linter's graph, which counts imports inside functions too.
    import grimp

    g = grimp.build_graph("selfsup")
    cycles = [
        (a, b)
        for a in sorted(g.modules)
        for b in g.find_modules_directly_imported_by(a)
        if g.find_shortest_chain(importer=b, imported=a)
    ]
    assert cycles == []


#: Module names two packages share, each for one idea: a package's own helpers and input checks, the
#: generator of a dataset, a table of names, and a family's losses (criteria) beside the family's methods.
# one idea at two layers: a method's loss (criteria/) and its kind (methods/); a layer's scores (evaluate/)
# and the choice of a layer by them (select/)
SHARED_NAMES = {
    "__init__",
    "__main__",
    "_common",
    "_validate",
    "generate",
    "registry",
    "sie",
    "moco",
    "masked",
}
SHARED_NAMES |= {"layers"}


def test_no_two_modules_share_a_name_for_different_ideas():
    from collections import Counter

    root = Path(selfsup.__file__).parent
    names = Counter(p.stem for p in root.rglob("*.py"))
    assert {n for n, k in names.items() if k > 1} <= SHARED_NAMES
