"""The mixture log-density's hand-written backward against autograd through the plain formula
(log-densities, then logsumexp): values and all four gradients, in float64 and float32, under
vmap (packed trials on a GPU), and at posteriors narrow enough to reach the exp floor."""

import math

import pytest
import torch
from torch.func import grad, vmap

from marl.mixture import mixture_log_density


def plain(z, mu, logvar, log_w):
    """The formula as written: mat[i, j, d] = log N(z_id; mu_jd, exp(logvar_jd))."""
    mat = -0.5 * (math.log(2 * math.pi) + logvar[None] + (z[:, None] - mu[None]) ** 2 * torch.exp(-logvar[None]))
    return torch.logsumexp(mat.sum(2) + log_w, 1), torch.logsumexp(mat + log_w[:, :, None], 1)


def inputs(b, j, d, dtype, logvar_low=-10.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = 2 * torch.randn(b, d, generator=g, dtype=dtype)
    mu = torch.randn(j, d, generator=g, dtype=dtype)
    logvar = logvar_low * torch.rand(j, d, generator=g, dtype=dtype)
    log_w = torch.log_softmax(torch.randn(b, j, generator=g, dtype=dtype), 1)
    return z, mu, logvar, log_w


def values_and_grads(fn, args, seed=1):
    leaves = [a.clone().requires_grad_() for a in args]
    joint, dims = fn(*leaves)
    g = torch.Generator().manual_seed(seed)
    w_joint = torch.randn(joint.shape, generator=g, dtype=joint.dtype)
    w_dims = torch.randn(dims.shape, generator=g, dtype=dims.dtype)
    ((joint * w_joint).sum() + (dims * w_dims).sum()).backward()
    return (joint.detach(), dims.detach()), [leaf.grad for leaf in leaves]


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize("shape", [(7, 5, 3), (64, 256, 8), (32, 1024, 4)])
def test_values_and_gradients_equal_autograd_through_the_plain_formula(shape, dtype, tol):
    args = inputs(*shape, dtype)
    (joint, dims), grads = values_and_grads(mixture_log_density, args)
    (joint_ref, dims_ref), grads_ref = values_and_grads(plain, args)
    torch.testing.assert_close(joint, joint_ref, rtol=tol, atol=tol * 10)
    torch.testing.assert_close(dims, dims_ref, rtol=tol, atol=tol * 10)
    for name, got, want in zip(("z", "mu", "logvar", "log_w"), grads, grads_ref):
        scale = want.abs().max()
        assert (got - want).abs().max() <= tol * 10 * scale, name


def test_a_batch_of_one_and_a_single_component_have_closed_forms():
    # one component: log q(z_i) is its log-density plus its log weight, per dimension too
    z, mu, logvar, _ = inputs(5, 1, 3, torch.float64)
    log_w = torch.full((5, 1), -math.log(7.0), dtype=torch.float64)
    joint, dims = mixture_log_density(z, mu, logvar, log_w)
    per_dim = -0.5 * (math.log(2 * math.pi) + logvar + (z - mu) ** 2 * torch.exp(-logvar))
    torch.testing.assert_close(dims, per_dim + log_w)
    torch.testing.assert_close(joint, per_dim.sum(1) + log_w[:, 0])


def test_narrow_posteriors_far_from_the_samples_keep_finite_values_and_gradients():
    # at the log-variance floor most components lie hundreds of nats below the best one: their
    # weights fall under the exp floor, and nothing may turn into NaN or inf
    z, mu, logvar, log_w = inputs(64, 256, 8, torch.float32)
    logvar = torch.full_like(logvar, -10.0)
    (joint, dims), grads = values_and_grads(mixture_log_density, (z, mu, logvar, log_w))
    (joint_ref, dims_ref), grads_ref = values_and_grads(plain, (z, mu, logvar, log_w))
    assert torch.isfinite(joint).all() and torch.isfinite(dims).all()
    assert all(torch.isfinite(g).all() for g in grads)
    torch.testing.assert_close(dims, dims_ref, rtol=1e-5, atol=1e-2)
    for got, want in zip(grads[:3], grads_ref[:3]):
        assert (got - want).abs().max() <= 1e-4 * want.abs().max()


def test_vmap_over_members_equals_each_member_alone():
    zs, mus, logvars = (torch.stack(t) for t in zip(*(inputs(16, 16, 4, torch.float64, -3.0, seed=s)[:3]
                                                    for s in range(3))))
    log_w = torch.full((16, 16), -math.log(16.0), dtype=torch.float64)

    def total(fn):
        return lambda z, mu, logvar: sum(t.sum() for t in fn(z, mu, logvar, log_w))

    batched = vmap(grad(total(mixture_log_density), argnums=(0, 1, 2)))(zs, mus, logvars)
    for k in range(3):
        alone = grad(total(plain), argnums=(0, 1, 2))(zs[k], mus[k], logvars[k])
        for got, want in zip(batched, alone):
            torch.testing.assert_close(got[k], want)


def test_compiled_vmap_over_members_equals_each_member_alone():
    # what a packed trial on a GPU with `compile: true` runs (marl.trainer): torch.compile of a
    # vmapped forward, then autograd's backward; torch.compile then differentiates the forward
    # itself, which in-place ops broke
    args = [torch.stack(t) for t in zip(*(inputs(8, 8, 3, torch.float32, -3.0, seed=s)[:3] for s in range(2)))]
    log_w = torch.full((8, 8), -math.log(8.0))
    leaves = [a.clone().requires_grad_() for a in args]
    joint, dims = torch.compile(vmap(lambda z, mu, logvar: mixture_log_density(z, mu, logvar, log_w)))(*leaves)
    (joint.sum() + dims.sum()).backward()
    for k in range(2):
        alone = [a[k].clone().requires_grad_() for a in args]
        want_joint, want_dims = plain(*alone, log_w)
        (want_joint.sum() + want_dims.sum()).backward()
        torch.testing.assert_close(joint[k], want_joint)
        for got, want in zip(leaves, alone):
            torch.testing.assert_close(got.grad[k], want.grad, rtol=1e-4, atol=1e-4)


def test_a_second_backward_through_a_retained_graph_gives_the_same_gradients():
    z, mu, logvar, log_w = inputs(8, 6, 3, torch.float64)
    z, mu, logvar = (t.requires_grad_() for t in (z, mu, logvar))
    joint, dims = mixture_log_density(z, mu, logvar, log_w)
    loss = joint.sum() + dims.sum()
    first = torch.autograd.grad(loss, (z, mu, logvar), retain_graph=True)
    second = torch.autograd.grad(loss, (z, mu, logvar))
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("used", ["joint", "dims"])
def test_a_loss_that_uses_one_output_gets_that_outputs_gradients(used):
    args = inputs(16, 12, 3, torch.float64)
    pick = (lambda out: out[0].sum()) if used == "joint" else (lambda out: out[1].sum())
    leaves = [a.clone().requires_grad_() for a in args[:3]]
    pick(mixture_log_density(*leaves, args[3])).backward()
    ref = [a.clone().requires_grad_() for a in args[:3]]
    pick(plain(*ref, args[3])).backward()
    for got, want in zip(leaves, ref):
        torch.testing.assert_close(got.grad, want.grad)
