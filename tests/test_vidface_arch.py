"""VidFace network: official checkpoint layout and outputs, shapes, landmark encodings, gradients, bad input."""
import vfsr_compat  # noqa: F401  (before basicsr)

import pytest
import torch
from basicsr.utils.registry import ARCH_REGISTRY
from conftest import TEST_DATA_DIR, load_reference, read_key_list, reference_key_list, state_dict_key_list
from torch import nn

import vfsr_arch  # noqa: F401  (registers VidFace)
from vfsr_arch.vidface_arch import LandmarkPositionEncoding, PatchesToImage

# a small network on a smaller token grid and fewer snapshots than the paper's, so shapes are not coincidences
SMALL = dict(num_frames=3, lr_size=(8, 6), embed_dim=22, depth=1, num_heads=4, mlp_ratio=2.0, token_dim=8,
             deu_out_channels=2, deu_heads=2, deu_qk_dim=8, head_hidden=8, num_iter=2)


def build(**kwargs):
    return ARCH_REGISTRY.get('VidFace')(**kwargs)


def small_input(batch=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, SMALL['num_frames'], 3, *SMALL['lr_size'], generator=generator) * 2 - 1


@pytest.fixture(scope='module')
def default_state_dict():
    return build().state_dict()


def test_reproduces_official_tiny_configuration():
    reference = load_reference('vidface_tiny_A.pt')
    config = reference['config']
    net = build(num_frames=config['num_frames'], lr_size=(config['img_size'], config['img_size'] // 4 * 3),
                embed_dim=config['embed_dim'], depth=config['depth'], num_heads=config['num_heads'],
                mlp_ratio=config['mlp_ratio'], token_dim=config['token_dim'], deu_out_channels=config['deu_out_ch'],
                deu_heads=config['deu_heads'], head_hidden=config['hr_hidden'], num_iter=config['num_iter'])
    net.load_state_dict(reference['state_dict'], strict=True)
    net.eval()
    with torch.no_grad():
        out, landmarks = net(reference['inputs']['x'], **config['forward_kwargs'])
    expected = reference['outputs']
    assert out.shape == expected['out'].shape
    assert (out - expected['out']).abs().max() <= 1e-4
    assert len(landmarks) == 2
    for index, predicted in enumerate(landmarks):
        assert (predicted - expected[f'lmks_{index}']).abs().max() <= 1e-4


def test_default_network_has_official_key_list(default_state_dict):
    assert state_dict_key_list(default_state_dict) == reference_key_list('vidface_full_state_dict.txt')


def test_default_network_matches_pinned_key_list(default_state_dict):
    path = TEST_DATA_DIR / 'vidface_keys.txt'
    assert state_dict_key_list(default_state_dict) == read_key_list(path)
    pinned_params = int(path.read_text().splitlines()[0].removeprefix('# params: '))
    assert sum(value.numel() for value in default_state_dict.values()) == pinned_params == 16_269_055


def test_position_encoding_is_frozen_sinusoid():
    net = build(**SMALL)
    table = net.vidface.pos_embed
    assert not table.requires_grad
    assert table.shape == (1, 8 * 6, SMALL['embed_dim'])
    assert torch.allclose(table[0, :, 0], torch.sin(torch.arange(48.0)))  # channel 0: sin(position)
    assert torch.allclose(table[0, :, 1], torch.cos(torch.arange(48.0)))


def test_official_initialisation():
    torch.manual_seed(5)
    net = build(**SMALL)
    linears = [module for module in net.modules() if isinstance(module, torch.nn.Linear)]
    assert len(linears) == 22
    assert all(not linear.bias.any() for linear in linears if linear.bias is not None)
    weights = torch.cat([linear.weight.flatten() for linear in linears])
    assert abs(weights.std().item() - 0.03) < 0.001


@pytest.mark.parametrize('encoding, embed_dim, refined_dim', [('offset', 22, 32), ('distance', 23, 28)])
def test_shapes_and_gradients(encoding, embed_dim, refined_dim):
    torch.manual_seed(0)
    net = build(**{**SMALL, 'landmark_encoding': encoding, 'embed_dim': embed_dim})
    assert net.vidface.blocks[0].norm1.normalized_shape == (refined_dim,)
    x = small_input()
    out, landmarks = net(x)
    assert out.shape == (2, 3, 3, 64, 48)
    assert len(landmarks) == SMALL['num_iter']
    assert all(predicted.shape == (2 * 3, 10) for predicted in landmarks)
    (out.square().mean() + sum(predicted.square().mean() for predicted in landmarks)).backward()
    for name, parameter in net.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
            assert torch.isfinite(parameter.grad).all(), name


def test_offset_encoding_matches_token_positions():
    encoding = LandmarkPositionEncoding((4, 3), 'offset')
    landmarks = torch.arange(10.0).unsqueeze(0) / 100
    offsets = encoding(landmarks)[0]  # (12, 10)
    row, col = 2, 1  # token index 7
    assert torch.allclose(offsets[row * 3 + col, 0::2], col / 3 - 0.5 - landmarks[0, 0::2])
    assert torch.allclose(offsets[row * 3 + col, 1::2], row / 4 - 0.5 - landmarks[0, 1::2])


def test_distance_encoding_is_l1_normalised_euclidean_distance():
    encoding = LandmarkPositionEncoding((4, 3), 'distance')
    landmarks = torch.tensor([[-0.5, -0.5, 0.3, 0.1, 0.0, 0.0, -0.2, 0.4, 0.1, -0.3]], requires_grad=True)
    distances = encoding(landmarks)[0]  # (12, 5)
    assert distances.shape == (12, 5)
    assert torch.allclose(distances.sum(-1), torch.ones(12))
    assert distances[0, 0] < 1e-5  # landmark 0 at (-0.5, -0.5): token (0, 0)'s position, its corner (official grid)
    token_xy = torch.tensor([1 / 3 - 0.5, 2 / 4 - 0.5])  # token (2, 1)
    raw = (token_xy - landmarks.detach().view(5, 2)).norm(dim=-1)
    assert torch.allclose(distances[2 * 3 + 1], raw / raw.sum())
    distances.sum().backward()
    assert torch.isfinite(landmarks.grad).all()


def test_snapshots_are_an_unordered_set():
    """No temporal encoding: permuting the snapshots permutes the outputs and landmarks the same way."""
    torch.manual_seed(1)
    net = build(**SMALL).eval()
    x = small_input(batch=1)
    order = torch.tensor([2, 0, 1])
    with torch.no_grad():
        out, landmarks = net(x)
        permuted_out, permuted_landmarks = net(x[:, order])
    assert torch.allclose(permuted_out, out[:, order], atol=1e-5)
    assert torch.allclose(permuted_landmarks[-1], landmarks[-1][order], atol=1e-5)


def test_samples_of_a_batch_are_independent():
    torch.manual_seed(2)
    net = build(**SMALL).eval()
    x = small_input(batch=2)
    with torch.no_grad():
        batched, batched_landmarks = net(x)
        single, single_landmarks = net(x[1:])
    assert torch.allclose(batched[1:], single, atol=1e-5)
    assert torch.allclose(batched_landmarks[-1][3:], single_landmarks[-1], atol=1e-5)


def test_decoder_landmark_option_changes_only_the_image():
    torch.manual_seed(3)
    official = build(**SMALL).eval()
    final = build(decoder_uses_final_landmarks=True, **SMALL).eval()
    final.load_state_dict(official.state_dict())
    x = small_input(batch=1)
    with torch.no_grad():
        official_out, official_landmarks = official(x)
        final_out, final_landmarks = final(x)
    assert torch.equal(official_landmarks[-1], final_landmarks[-1])
    assert not torch.allclose(official_out, final_out)


def test_checkpointed_refiner_gives_the_same_outputs_and_gradients():
    """Recomputing the refiner in backward (with stochastic depth active) changes neither outputs nor gradients."""
    x = small_input(batch=2)
    results = []
    for checkpoint_refiner in (False, True):
        torch.manual_seed(6)
        net = build(drop_path_rate=0.5, checkpoint_refiner=checkpoint_refiner, **{**SMALL, 'depth': 2})
        out, landmarks = net(x)
        (out.square().mean() + landmarks[-1].square().mean()).backward()
        results.append((out.detach(), [parameter.grad for parameter in net.vidface.blocks.parameters()]))
    (plain_out, plain_grads), (checkpointed_out, checkpointed_grads) = results
    assert torch.equal(plain_out, checkpointed_out)
    for plain, checkpointed in zip(plain_grads, checkpointed_grads):
        assert torch.allclose(plain, checkpointed, atol=1e-6)


def test_drop_path_is_random_in_training_only():
    torch.manual_seed(4)
    net = build(drop_path_rate=0.5, **{**SMALL, 'depth': 2})
    x = small_input(batch=2)
    net.train()
    with torch.no_grad():
        first, second = net(x)[0], net(x)[0]
    assert not torch.allclose(first, second)
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x)[0], net(x)[0])


@pytest.mark.parametrize('shape, message', [
    ((1, 2, 3, 8, 6), 'configured for 3 snapshots, got 2'),
    ((1, 3, 3, 16, 12), 'LR snapshots of 8x6 (height x width), got 16x12'),
    ((1, 3, 1, 8, 6), 'expects 3 (RGB) channels, got 1'),
    ((3, 3, 8, 6), 'expects input (batch, snapshots, 3, height, width)'),
])
def test_bad_input_names_expected_and_actual(shape, message):
    net = build(**SMALL)
    with pytest.raises(ValueError, match=message.replace('(', r'\(').replace(')', r'\)')):
        net(torch.zeros(shape))


@pytest.mark.parametrize('kwargs, message', [
    (dict(landmark_encoding='heatmap'), "landmark_encoding must be 'offset' or 'distance'"),
    (dict(scale=3), 'scale must be even'),
    (dict(token_dim=12), 'token_dim must be a multiple of 8'),
    (dict(num_iter=0), 'num_iter must be at least 1'),
    (dict(landmark_encoding='distance'), r'embed_dim \+ landmark encoding channels = 27 must be a multiple of '
                                         r'num_heads = 4'),
    (dict(deu_heads=3), r'deu_out_channels \* \(2 \* scale\)\^2 = 512 must be a multiple of deu_heads = 3'),
])
def test_bad_configuration_is_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build(**{**SMALL, **kwargs})


@pytest.mark.parametrize('kernel, stride, padding, grid', [(16, 8, 4, (16, 12)), (4, 2, 1, (5, 3)), (6, 2, 2, (4, 4)),
                                                           (8, 8, 0, (3, 2))])
def test_patches_to_image_is_nn_fold(kernel, stride, padding, grid):
    output_size = tuple((n - 1) * stride + kernel - 2 * padding for n in grid)
    patches = torch.randn(3, grid[0] * grid[1], 5 * kernel ** 2, requires_grad=True)
    expected = nn.Fold(output_size, kernel, stride=stride, padding=padding)(patches.transpose(1, 2))
    image = PatchesToImage(output_size, kernel, stride, padding)(patches)
    assert torch.equal(image, expected)
    upstream = torch.randn_like(expected)
    assert torch.equal(*(torch.autograd.grad(out, patches, upstream)[0] for out in (image, expected)))
