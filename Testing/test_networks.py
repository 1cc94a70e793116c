"""Network configurations and the MM-GAN generator and discriminator."""

from __future__ import annotations

import doctest
import json

import pytest

torch = pytest.importorskip("torch")

from MRImputationLib.models.mmgan import config as network_config  # noqa: E402
from MRImputationLib.models.mmgan import conditioning, heads, networks, paths  # noqa: E402
from MRImputationLib.models.mmgan import family as mmgan_family  # noqa: E402
from MRImputationLib.models import family  # noqa: E402
from MRImputationLib.core.errors import InputError  # noqa: E402
from MRImputationLib.models.mmgan.config import PRESETS, GeneratorConfig, ModelConfig, preset  # noqa: E402
from MRImputationLib.models.mmgan.conditioning import discriminator_condition, implicit_conditioning, zero_missing  # noqa: E402
from MRImputationLib.models.mmgan.networks import (  # noqa: E402
    UNetGenerator,
    build_discriminator,
    build_generator,
    generator_flops,
)
from MRImputationLib.models.layers import count_parameters  # noqa: E402
from MRImputationLib.models.mmgan.paths import AvailabilityLinearPath  # noqa: E402


def tiny(contrasts: int = 3, **changes) -> ModelConfig:
    import dataclasses

    return dataclasses.replace(preset("tiny", contrasts), **changes)


def tiny_generator(**changes) -> GeneratorConfig:
    import dataclasses

    return dataclasses.replace(preset("tiny", 3).generator, **changes)


def test_docstring_examples_run():
    for module in (network_config, networks, heads, paths, conditioning, mmgan_family, family):
        assert doctest.testmod(module).failed == 0


@pytest.mark.parametrize("contrasts", [3, 4])
@pytest.mark.parametrize("size", [16, 32, 64])
def test_generator_maps_n_contrasts_to_n_contrasts_at_any_power_of_two_size(contrasts, size):
    generator = build_generator(tiny(contrasts)).eval()
    with torch.no_grad():
        out = generator(torch.rand(2, contrasts, size, size))
    assert out.shape == (2, contrasts, size, size)
    assert (out >= 0).all()  # ReLU head


def test_extra_input_channels_widen_only_the_input():
    config = tiny(3, generator=GeneratorConfig(depth=4, base_width=8, max_width=32, dropout_blocks=1,
                                               dropout_down_blocks=2, extra_input_channels=3))
    generator = build_generator(config).eval()
    assert generator(torch.rand(1, 6, 32, 32)).shape == (1, 3, 32, 32)


@pytest.mark.parametrize("contrasts", [3, 4])
@pytest.mark.parametrize("size", [32, 64])
def test_discriminator_gives_one_patch_map_per_contrast_at_a_sixteenth_of_the_size(contrasts, size):
    config = tiny(contrasts, image_size=size)
    discriminator = build_discriminator(config)
    candidate = torch.rand(2, contrasts, size, size)
    out = discriminator(candidate, candidate)
    assert out.shape == (2, contrasts, size // 16, size // 16)


def test_imputed_condition_pairs_candidate_with_zeroed_input_and_mask():
    import dataclasses

    base = tiny(3)
    config = dataclasses.replace(base, discriminator=dataclasses.replace(base.discriminator, condition="imputed"))
    real = torch.rand(2, 3, 32, 32) + 0.1
    available = torch.tensor([[True, False, True], [False, True, False]])
    condition = discriminator_condition(config, real, available)
    assert condition.shape == (2, 6, 32, 32)
    assert torch.equal(condition[0, 0], real[0, 0]) and (condition[0, 1] == 0).all()
    assert torch.equal(condition[:, 3:, 0, 0], available.float())
    discriminator = build_discriminator(config)
    assert discriminator.model[0].in_channels == 9
    assert discriminator(real, condition).shape == (2, 3, 2, 2)
    assert discriminator_condition(base, real, available) is real


def test_implicit_conditioning_replaces_exactly_the_available_channels():
    output = torch.full((2, 3, 4, 4), -1.0, requires_grad=True)
    real = torch.rand(2, 3, 4, 4)
    available = torch.tensor([[1, 0, 1], [0, 0, 1]])
    result = implicit_conditioning(output, real, available)
    for b in range(2):
        for c in range(3):
            expected = real[b, c] if available[b, c] else output[b, c]
            assert torch.equal(result[b, c], expected)
    result.sum().backward()
    assert torch.equal(output.grad[:, :, 0, 0], 1.0 - available.float())
    # one scenario for the whole batch
    shared = implicit_conditioning(output, real, torch.tensor([False, True, False]))
    assert torch.equal(shared[:, 1], real[:, 1]) and (shared[:, [0, 2]] == -1).all()


def test_zero_missing_zeroes_only_missing_channels():
    real = torch.rand(1, 3, 4, 4) + 0.5
    x = zero_missing(real, torch.tensor([True, False, True]))
    assert (x[:, 1] == 0).all() and torch.equal(x[:, [0, 2]], real[:, [0, 2]])


def test_dropout_is_active_in_training_and_off_in_evaluation():
    generator = build_generator(tiny(3))
    x = torch.rand(1, 3, 32, 32)
    generator.eval()
    with torch.no_grad():
        assert torch.equal(generator(x), generator(x))
    generator.train()
    torch.manual_seed(0)
    with torch.no_grad():
        assert not torch.equal(generator(x), generator(x))


def test_dropout_and_norm_placement_follow_the_authors_code():
    with torch.device("meta"):
        generator = UNetGenerator(3, 3, GeneratorConfig())

    def has(block, kind):
        return any(isinstance(m, kind) for m in block.modules())

    down_dropout = [has(b, torch.nn.Dropout) for b in generator.down]
    up_dropout = [has(b, torch.nn.Dropout) for b in generator.up]
    down_norm = [has(b, torch.nn.InstanceNorm2d) for b in generator.down]
    assert down_dropout == [False] * 3 + [True] * 5  # down4..down8
    assert up_dropout == [True] * 4 + [False] * 3  # up1..up4
    assert down_norm == [False] + [True] * 6 + [False]
    assert all(has(b, torch.nn.InstanceNorm2d) for b in generator.up)
    assert not any(m.affine for m in generator.modules() if isinstance(m, torch.nn.InstanceNorm2d))


@pytest.mark.parametrize("contrasts", [3, 4])
def test_faithful_networks_have_the_published_size(contrasts):
    config = preset("mmgan-faithful", contrasts)
    with torch.device("meta"):  # counts without allocating 54 M parameters
        generator = UNetGenerator(contrasts, contrasts, config.generator)
        discriminator = networks.PatchDiscriminator(contrasts, contrasts, config.discriminator)
    assert count_parameters(generator) == pytest.approx(54.4e6, rel=0.002)
    assert count_parameters(discriminator) == pytest.approx(2.8e6, rel=0.01)
    assert generator_flops(config) / 1e9 == pytest.approx({3: 12.70, 4: 13.00}[contrasts], abs=0.01)


def test_seed_ixi_generator_has_about_29_million_parameters():
    config = preset("seed-ixi", 3)
    with torch.device("meta"):
        generator = UNetGenerator(3, 3, config.generator)
    assert count_parameters(generator) == pytest.approx(29.2e6, rel=0.01)
    assert config.fake_target == "zeros"


def test_weights_start_normal_with_small_spread():
    torch.manual_seed(0)
    generator = build_generator(tiny(3, generator=GeneratorConfig(depth=5, base_width=32, max_width=64)))
    weights = torch.cat([m.weight.flatten() for m in generator.modules() if isinstance(m, torch.nn.Conv2d)])
    assert abs(weights.mean().item()) < 0.002 and weights.std().item() == pytest.approx(0.02, rel=0.05)


def test_channels_last_gives_the_same_output():
    generator = build_generator(tiny(3)).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = generator(x)
        got = generator.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("paths", [{}, {"linear_path": True}, {"linear_path": True, "voxel_path_width": 8},
                                   {"head": "full-resolution"}])
def test_generator_traces_without_graph_breaks(paths):
    generator = build_generator(tiny(3, generator=tiny_generator(**paths))).eval()
    exported = torch.export.export(generator, (torch.rand(1, 3, 32, 32),))
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), generator(x))


def test_presets_are_named_and_unknown_names_list_them():
    assert {"mmgan-faithful", "seed-ixi", "tiny", "mmgan-reduced"} <= set(PRESETS)
    faithful = preset("mmgan-faithful", 4)
    assert (faithful.contrasts, faithful.image_size, faithful.generator.widths()) == (4, 256, [64, 128, 256, 512, 512, 512, 512, 512])
    with pytest.raises(InputError, match="mmgan-faithful"):
        preset("pix2pix", 3)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_configuration_survives_a_json_round_trip(name):
    config = preset(name, 4)
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_configuration_refuses_unknown_fields_and_bad_sizes():
    data = preset("tiny", 3).to_dict()
    data["generator"]["widht"] = 3
    with pytest.raises(InputError, match="widht"):
        ModelConfig.from_dict(data)
    with pytest.raises(InputError, match="power of two"):
        tiny(3, image_size=48)
    with pytest.raises(InputError, match="condition"):
        ModelConfig.from_dict({**preset("tiny", 3).to_dict(), "discriminator": {"condition": "half"}})


def test_full_resolution_head_passes_voxel_scale_detail_that_the_mmgan_head_loses():
    """Copy a voxel-scale random texture from a given contrast into a missing one: after the same
    short training, the project's full-resolution head does it far better than MM-GAN's head,
    which builds every output pixel from half-resolution features."""
    def trained_error(head: str) -> float:
        torch.manual_seed(0)
        config = tiny(generator=GeneratorConfig(depth=4, base_width=8, max_width=32, dropout=0.0,
                                                   dropout_blocks=0, dropout_down_blocks=0, head=head))
        generator = build_generator(config)
        optimizer = torch.optim.Adam(generator.parameters(), lr=1e-2)
        for _ in range(200):
            texture = torch.rand(8, 1, 32, 32)
            x = torch.cat((texture, torch.zeros(8, 2, 32, 32)), dim=1)  # contrast 0 given, 1 and 2 missing
            loss = (generator(x)[:, 1:2] - texture).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        texture = torch.rand(8, 1, 32, 32)
        with torch.no_grad():
            output = generator(torch.cat((texture, torch.zeros(8, 2, 32, 32)), dim=1))
        return float((output[:, 1:2] - texture).pow(2).mean())

    full, mmgan = trained_error("full-resolution"), trained_error("mmgan")
    assert full < 0.25 * mmgan, (full, mmgan)


def test_an_unknown_head_is_refused_naming_the_choices():
    with pytest.raises(InputError, match="full-resolution"):
        GeneratorConfig(head="bilinear").validate()


def test_linear_path_keeps_one_affine_map_per_pattern_of_given_contrasts():
    path = AvailabilityLinearPath(3)
    path.set_map((True, False, False), 1, 0.5, [2.0])  # only contrast 0 given: contrast 1 = 2 c0 + 0.5
    path.set_map((True, False, True), 1, 0.0, [0.0, -1.0])  # contrasts 0 and 2 given: contrast 1 = -c2
    c0, c2 = torch.rand(1, 1, 8, 8) + 0.1, torch.rand(1, 1, 8, 8) + 0.1
    zeros = torch.zeros(1, 1, 8, 8)
    only_0 = path(torch.cat((c0, zeros, zeros), dim=1))
    torch.testing.assert_close(only_0[:, 1:2], 2 * c0 + 0.5)
    assert only_0[:, [0, 2]].abs().max() == 0
    both = path(torch.cat((c0, zeros, c2), dim=1))
    torch.testing.assert_close(both[:, 1:2], -c2)
    mixed_batch = path(torch.cat((torch.cat((c0, zeros, zeros), dim=1), torch.cat((c0, zeros, c2), dim=1))))
    torch.testing.assert_close(mixed_batch, torch.cat((only_0, both)))


@pytest.mark.parametrize("voxel_path_width", [0, 16])
def test_an_untrained_generator_with_the_linear_path_outputs_exactly_the_linear_map(voxel_path_width):
    generator = build_generator(tiny(3, generator=tiny_generator(linear_path=True, voxel_path_width=voxel_path_width))).eval()
    assert not any(name.startswith("linear_path") for name, _ in generator.named_parameters())  # fixed, not trained
    generator.linear_path.set_map((True, False, True), 1, 0.5, [1.0, -2.0])
    x = torch.rand(2, 3, 32, 32)
    x[:, 1] = 0
    with torch.no_grad():
        output = generator(x)
    torch.testing.assert_close(output[:, 1], torch.relu(0.5 + x[:, 0] - 2 * x[:, 2]))
    assert output[:, [0, 2]].abs().max() == 0  # nothing mapped there yet; the U-Net's residual starts at zero


def test_voxel_path_learns_a_non_linear_voxel_wise_mapping_per_pattern_that_the_unet_alone_misses():
    """Missing contrast 2 is c0 x c1 at the same voxel when both are given, and sqrt(c0) when only c0
    is: voxel-scale random textures, so only a voxel-exact mapping helps. After the same short
    training the generator with the voxel path is far closer than the authors' U-Net alone."""
    def trained_error(voxel_path_width: int) -> float:
        torch.manual_seed(0)
        generator = build_generator(tiny(generator=tiny_generator(dropout=0.0, voxel_path_width=voxel_path_width)))
        optimizer = torch.optim.Adam(generator.parameters(), lr=1e-2)

        def batch():
            c0, c1 = torch.rand(8, 1, 32, 32) + 0.1, torch.rand(8, 1, 32, 32) + 0.1
            both, only_c0 = torch.arange(8)[:, None, None, None] < 4, torch.arange(8)[:, None, None, None] >= 4
            target = torch.where(both, c0 * c1, c0.sqrt())
            x = torch.cat((c0, torch.where(only_c0, torch.zeros(()), c1), torch.zeros_like(c0)), dim=1)
            return x, target

        for _ in range(200):
            x, target = batch()
            loss = (generator(x)[:, 2:3] - target).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        x, target = batch()
        with torch.no_grad():
            return float((generator(x)[:, 2:3] - target).pow(2).mean())

    with_path, without = trained_error(16), trained_error(0)
    assert with_path < 0.25 * without, (with_path, without)


def test_a_negative_voxel_path_width_is_refused():
    with pytest.raises(InputError, match="voxel_path_width"):
        GeneratorConfig(voxel_path_width=-1).validate()


def test_variants_are_named_options_whose_json_is_the_string_it_always_was():
    from MRImputationLib.models.mmgan.config import DiscriminatorCondition, FakeTarget, Head

    data = preset("seed-ixi", 3).to_dict()
    data["generator"]["head"], data["discriminator"]["condition"] = "full-resolution", "imputed"
    config = ModelConfig.from_dict(data)
    assert config.generator.head is Head.FULL_RESOLUTION and config.fake_target is FakeTarget.ZEROS
    assert config.discriminator.condition is DiscriminatorCondition.IMPUTED
    assert config.discriminator.condition_channels(3) == 6
    assert json.loads(json.dumps(config.to_dict())) == data
    assert type(config.to_dict()["generator"]["head"]) is str


def test_a_model_configuration_is_read_by_its_family_which_defaults_to_mmgan():
    from MRImputationLib.models.family import family_of, model_config_from_dict

    data = preset("tiny", 3).to_dict()
    assert "family" not in data  # model.json and bundle.json as they were before families
    assert model_config_from_dict(data) == model_config_from_dict({**data, "family": "mmgan"}) == preset("tiny", 3)
    assert family_of(preset("tiny", 3)).build_inference_network(preset("tiny", 3)).__class__ is UNetGenerator
    with pytest.raises(InputError, match="choose one of cyclegan, mmgan, vaeunet"):
        model_config_from_dict({**data, "family": "diffusion"})
    with pytest.raises(InputError, match="unknown field"):  # an MM-GAN configuration is not a CycleGAN's
        model_config_from_dict({**data, "family": "cyclegan"})
