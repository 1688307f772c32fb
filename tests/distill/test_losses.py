"""Every loss against values computed by hand (plain-Python math, not the code under test)."""

import math

import pytest
import torch

from emodistill.distill.losses import LOSSES, WeightSchedule, create_loss, kd_loss, rkd_loss


def softmax(xs, t=1.0):
    e = [math.exp(x / t) for x in xs]
    return [v / sum(e) for v in e]


def kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q) if a > 0)


def test_registry_names():
    assert {"ce", "unimodal", "kd", "feature", "dkd", "rkd"} <= set(LOSSES.names())


def test_ce_label_smoothing_hand_value():
    logits, eps = [2.0, 0.0, -1.0], 0.1
    p = softmax(logits)
    q = [(1 - eps) * (i == 0) + eps / 3 for i in range(3)]
    want = -sum(qi * math.log(pi) for qi, pi in zip(q, p))
    ce = create_loss("ce", label_smoothing=eps)
    got = ce({"logits": torch.tensor([logits])}, None, {"label": torch.tensor([0])})
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_ce_ignores_unlabeled_rows_and_empty_batch_is_zero():
    ce = create_loss("ce")
    logits = torch.tensor([[2.0, 0.0, -1.0], [5.0, -5.0, 0.0]])
    got = ce({"logits": logits}, None, {"label": torch.tensor([0, -1])})
    assert got.item() == pytest.approx(-math.log(softmax([2.0, 0.0, -1.0])[0]), rel=1e-6)
    zero = ce({"logits": logits.requires_grad_()}, None, {"label": torch.tensor([-1, -1])})
    assert zero.item() == 0.0 and zero.requires_grad


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_kd_at_temperature_with_t2_scaling(temperature):
    s, t = [[1.0, 0.0, -2.0], [0.5, 0.5, 0.0]], [[0.0, 1.5, -1.0], [2.0, -1.0, 0.3]]
    want = sum(kl(softmax(tt, temperature), softmax(ss, temperature)) for ss, tt in zip(s, t)) / 2
    want *= temperature ** 2
    kd = create_loss("kd", temperature=temperature)
    got = kd({"logits": torch.tensor(s)}, {"logits": torch.tensor(t)}, {"label": torch.tensor([0, 1])})
    assert got.item() == pytest.approx(want, rel=1e-5)
    # T^2 keeps the gradient scale comparable across temperatures: the KL itself shrinks ~1/T^2
    assert kd_loss(torch.tensor(s), torch.tensor(t), temperature).item() == pytest.approx(want, rel=1e-5)


def test_kd_is_zero_when_student_equals_teacher():
    x = torch.randn(4, 6)
    assert kd_loss(x, x.clone(), 3.0).item() == pytest.approx(0.0, abs=1e-6)

def test_kd_teacher_errors_drop_and_swap():
    s = [[1.0, 0.0, -2.0], [0.5, 0.5, 0.0], [0.0, 2.0, 1.0]]
    t = [[0.0, 1.5, -1.0], [2.0, -1.0, 0.3], [1.0, -1.0, 3.0]]
    labels = [1, 2, -1]  # row 0: teacher right (argmax 1); row 1: wrong (argmax 0); row 2: unlabeled
    batch = {"label": torch.tensor(labels)}

    def run(mode):
        kd = create_loss("kd", temperature=2.0, teacher_errors=mode)
        return kd({"logits": torch.tensor(s)}, {"logits": torch.tensor(t)}, batch).item()

    row = [kl(softmax(t[i], 2.0), softmax(s[i], 2.0)) for i in range(3)]
    assert run("keep") == pytest.approx(sum(row) / 3 * 4.0, rel=1e-5)
    assert run("drop") == pytest.approx((row[0] + row[2]) / 2 * 4.0, rel=1e-5)
    swapped = [0.3, -1.0, 2.0]  # row 1: the label's logit (0.3) and the top logit (2.0) trade places
    want = (row[0] + kl(softmax(swapped, 2.0), softmax(s[1], 2.0)) + row[2]) / 3 * 4.0
    assert run("swap") == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError, match="teacher_errors"):
        create_loss("kd", teacher_errors="fix")


def test_kd_min_confidence_masks_unsure_teacher_rows():
    s = [[1.0, 0.0, -2.0], [0.5, 0.5, 0.0], [0.0, 2.0, 1.0]]
    t = [[0.0, 4.0, -1.0], [0.2, 0.0, 0.1], [1.0, -1.0, 3.0]]
    conf = [max(softmax(row)) for row in t]                 # 0.97, 0.37, 0.84 at T = 1
    assert conf[0] > 0.9 and conf[1] < 0.5 and 0.8 < conf[2] < 0.9
    row = [kl(softmax(t[i], 2.0), softmax(s[i], 2.0)) for i in range(3)]
    batch = {"label": torch.tensor([1, 0, -1])}

    def run(threshold, errors="keep"):
        kd = create_loss("kd", temperature=2.0, min_confidence=threshold, teacher_errors=errors)
        return kd({"logits": torch.tensor(s)}, {"logits": torch.tensor(t)}, batch).item()

    assert run(0.0) == pytest.approx(sum(row) / 3 * 4.0, rel=1e-5)
    assert run(0.5) == pytest.approx((row[0] + row[2]) / 2 * 4.0, rel=1e-5)
    assert run(0.9) == pytest.approx(row[0] * 4.0, rel=1e-5)
    assert run(0.5, "drop") == pytest.approx((row[0] + row[2]) / 2 * 4.0, rel=1e-5)  # row 1 is also wrong
    assert run(0.99) == 0.0                                   # nothing confident enough: no KD at all
    with pytest.raises(ValueError, match="min_confidence"):
        create_loss("kd", min_confidence=1.0)


def test_kd_topk_teacher_logits():
    s, t, k, T = [0.3, -0.2, 1.0, 0.0], [2.0, -1.0, 0.5, 1.0], 2, 2.0
    kd = create_loss("kd", temperature=T)
    top = torch.tensor([t]).topk(k)
    cached = {"logits_topk_values": top.values.half(), "logits_topk_indices": top.indices}
    got = kd({"logits": torch.tensor([s])}, cached, {})
    idx = [0, 3]  # the two largest teacher logits
    pt = softmax([t[i] for i in idx], T)             # teacher renormalised over its top k
    ps = softmax(s, T)
    want = sum(a * math.log(a / ps[i]) for a, i in zip(pt, idx)) * T * T
    assert got.item() == pytest.approx(want, rel=1e-4)
    full = create_loss("kd", temperature=T)({"logits": torch.tensor([s])}, {"logits": torch.tensor([t])}, {})
    top4 = torch.tensor([t]).topk(4)
    all_k = kd({"logits": torch.tensor([s])}, {"logits_topk_values": top4.values,
                                               "logits_topk_indices": top4.indices}, {})
    assert all_k.item() == pytest.approx(full.item(), rel=1e-6)


def test_kd_without_teacher_is_a_clear_error():
    with pytest.raises(ValueError, match="needs teacher outputs"):
        create_loss("kd")({"logits": torch.zeros(1, 2)}, None, {})


def test_feature_mse_and_cosine_hand_values():
    s = torch.tensor([[[1.0, 2.0], [0.0, -1.0]]])       # [B=1,S=2,D=2]
    t = torch.tensor([[[1.5, 2.0], [1.0, 1.0]]])
    mse = create_loss("feature", student_dim=2, teacher_dim=2, key="features", mode="mse", normalize_target=False)
    with torch.no_grad():
        mse.proj.weight.copy_(torch.eye(2))
        mse.proj.bias.zero_()
    want = ((1.5 - 1) ** 2 + 0 + 1 ** 2 + 2 ** 2) / 4
    assert mse({"features": s}, {"features": t}, {}).item() == pytest.approx(want)
    cos = create_loss("feature", student_dim=2, teacher_dim=2, key="features", mode="cosine")
    with torch.no_grad():
        cos.proj.weight.copy_(torch.eye(2))
        cos.proj.bias.zero_()
    c1 = (1 * 1.5 + 2 * 2) / (math.hypot(1, 2) * math.hypot(1.5, 2))
    c2 = (0 * 1 - 1 * 1) / (1 * math.sqrt(2))
    assert cos({"features": s}, {"features": t}, {}).item() == pytest.approx(1 - (c1 + c2) / 2, rel=1e-6)


def test_feature_normalized_target_and_projector_dims():
    loss = create_loss("feature", student_dim=3, teacher_dim=5, key="pooled")
    s, t = torch.randn(4, 3), torch.randn(4, 5) * 7 + 3
    with torch.no_grad():
        loss.proj.weight.zero_()
        loss.proj.bias.zero_()
    # a zero projection against a layer-normalised target: the MSE is the target's mean square = 1
    assert loss({"pooled": s}, {"pooled": t}, {}).item() == pytest.approx(1.0, abs=1e-4)
    assert sum(p.numel() for p in loss.parameters()) == 3 * 5 + 5


def test_feature_pools_teacher_segments():
    loss = create_loss("feature", student_dim=2, teacher_dim=2, key="visual_features", normalize_target=False)
    with torch.no_grad():
        loss.proj.weight.copy_(torch.eye(2))
        loss.proj.bias.zero_()
    s = torch.tensor([[[1.0, 1.0]]])                     # S=1
    t = torch.tensor([[[0.0, 2.0], [2.0, 0.0]]])         # S'=2 -> mean [1, 1]
    assert loss({"visual_features": s}, {"visual_features": t}, {}).item() == pytest.approx(0.0, abs=1e-7)


def _smooth_l1(a, b):
    d = abs(a - b)
    return 0.5 * d * d if d < 1 else d - 0.5


def test_rkd_hand_value():
    s = [[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]]
    t = [[0.0, 0.0], [2.0, 0.0], [0.0, 1.0]]

    def dist(x):
        n = len(x)
        d = [[math.dist(x[i], x[j]) for j in range(n)] for i in range(n)]
        mean = sum(d[i][j] for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
        return [[d[i][j] / mean for j in range(n)] for i in range(n)]

    def angles(x):
        n, out = len(x), []
        for i in range(n):
            for j in range(n):
                for k in range(n):
                    e1 = [x[j][0] - x[i][0], x[j][1] - x[i][1]]
                    e2 = [x[k][0] - x[i][0], x[k][1] - x[i][1]]
                    n1, n2 = max(math.hypot(*e1), 1e-12), max(math.hypot(*e2), 1e-12)
                    out.append((e1[0] * e2[0] + e1[1] * e2[1]) / (n1 * n2))
        return out

    ds, dt = dist(s), dist(t)
    pairs = [(i, j) for i in range(3) for j in range(3) if i != j]
    d_term = sum(_smooth_l1(ds[i][j], dt[i][j]) for i, j in pairs) / len(pairs)
    a_s, a_t = angles(s), angles(t)
    a_term = sum(_smooth_l1(a, b) for a, b in zip(a_s, a_t)) / len(a_s)
    want = 25 * d_term + 50 * a_term
    got = rkd_loss(torch.tensor(s), torch.tensor(t))
    assert got.item() == pytest.approx(want, rel=1e-5)
    mod = create_loss("rkd", key="pooled", distance_weight=1.0, angle_weight=0.0)
    assert mod({"pooled": torch.tensor(s)}, {"pooled": torch.tensor(t)}, {}).item() == pytest.approx(d_term, rel=1e-5)


def test_rkd_invariant_to_teacher_scale_and_dim():
    s = torch.randn(6, 4)
    proj = torch.randn(4, 9)
    # the teacher's embedding is a scaled isometry of the student's: relations agree -> ~0 loss
    q, _ = torch.linalg.qr(proj.t())                    # [9,4] orthonormal columns
    t = 3.0 * s @ q.t()
    assert rkd_loss(s, t).item() == pytest.approx(0.0, abs=1e-4)


def test_dkd_hand_value():
    s, t, y, T, alpha, beta = [1.0, 0.0, -1.0], [2.0, 0.5, 0.0], 0, 2.0, 1.0, 8.0
    ps, pt = softmax(s, T), softmax(t, T)
    tckd = kl([pt[y], 1 - pt[y]], [ps[y], 1 - ps[y]]) * T * T
    nckd = kl(softmax(t[1:], T), softmax(s[1:], T)) * T * T
    want = alpha * tckd + beta * nckd
    dkd = create_loss("dkd", alpha=alpha, beta=beta, temperature=T)
    got = dkd({"logits": torch.tensor([s])}, {"logits": torch.tensor([t])}, {"label": torch.tensor([y])})
    assert got.item() == pytest.approx(want, rel=1e-5)
    # unlabeled rows take the teacher's argmax (class 0 here) as target
    unl = dkd({"logits": torch.tensor([s])}, {"logits": torch.tensor([t])}, {"label": torch.tensor([-1])})
    assert unl.item() == pytest.approx(want, rel=1e-5)


def test_weight_schedules():
    assert WeightSchedule(0.7)(0) == WeightSchedule(0.7)(10_000) == 0.7
    lin = WeightSchedule(1.0, "linear", warmup_steps=10, start_value=0.0, start_step=5)
    assert [lin(s) for s in (0, 5, 10, 15, 100)] == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.0])
    cos = WeightSchedule(2.0, "cosine", warmup_steps=4)
    assert [cos(s) for s in (0, 2, 4)] == pytest.approx([0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="unknown weight schedule"):
        WeightSchedule(1.0, "exp")


def test_unimodal_hand_value_mask_and_unlabeled():
    loss = create_loss("unimodal")
    # audio head: uniform logits -> CE = log 8 per clip; video head: confident and right on clip 0 (CE ~ 0)
    # and uniform on clip 1; clip 2 is unlabeled and ignored by both
    audio = torch.zeros(3, 8)
    video = torch.zeros(3, 8)
    video[0, 2] = 50.0
    out = {"logits": torch.zeros(3, 8), "audio_logits": audio, "visual_logits": video}
    batch = {"label": torch.tensor([2, 5, -1])}
    expected = (math.log(8) + (0.0 + math.log(8)) / 2) / 2
    assert loss(out, None, batch).item() == pytest.approx(expected, abs=1e-6)
    # clip 1 has no video: the video head is judged on clip 0 alone
    batch["modality_mask"] = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    assert loss(out, None, batch).item() == pytest.approx(math.log(8) / 2, abs=1e-6)


def test_unimodal_needs_unimodal_heads():
    with pytest.raises(KeyError, match="unimodal_heads"):
        create_loss("unimodal")({"logits": torch.zeros(2, 8)}, None, {"label": torch.tensor([0, 1])})


def test_unimodal_kd_by_hand_over_present_modalities():
    from emodistill.distill.losses import create_loss, kd_loss, needs_teacher

    g = torch.Generator().manual_seed(0)
    s = {k: torch.randn(4, 3, generator=g) for k in ("logits", "audio_logits", "visual_logits")}
    t = {"logits": torch.randn(4, 3, generator=g)}
    mask = torch.tensor([[1, 1], [1, 0], [0, 1], [1, 1]])
    loss = create_loss("unimodal_kd", temperature=2.0)
    want = (kd_loss(s["audio_logits"][[0, 1, 3]], t["logits"][[0, 1, 3]], 2.0)
            + kd_loss(s["visual_logits"][[0, 2, 3]], t["logits"][[0, 2, 3]], 2.0)) / 2
    torch.testing.assert_close(loss(s, t, {"modality_mask": mask}), want)
    # by hand for one row, T = 1, no mask: KL(p_t || p_s) averaged over the two heads
    one = {k: v[:1] for k, v in s.items()}
    p_t = torch.softmax(t["logits"][0], -1)
    kl = [(p_t * (p_t.log() - torch.log_softmax(one[k][0], -1))).sum() for k in ("audio_logits", "visual_logits")]
    torch.testing.assert_close(create_loss("unimodal_kd")(one, {"logits": t["logits"][:1]}, {}), (kl[0] + kl[1]) / 2)
    assert needs_teacher("unimodal_kd")  # the CE-only baseline drops it
    with pytest.raises(KeyError, match="unimodal heads"):
        loss({"logits": s["logits"]}, t, {})
