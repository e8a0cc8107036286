"""Why the trained baselines are not fold-batched: G folds' convolutions as one grouped convolution do not give each
fold the bits of its own convolution.

    OMP_NUM_THREADS=1 python bench/grouped_conv.py

Stacks G folds' inputs along channels and their weights along output channels (`groups=G`, which is also what
`torch.vmap` makes of a per-fold `conv2d`) and compares the forward output and the input, weight and bias gradients
with `F.conv2d` run fold by fold, for the convolutions of STSTNet and OFF-ApexNet at batch 32. Fold-parallel
training is bit-identical to one fold at a time only where every operation is (`mer_nb.foldpar`); one rounding
difference grows through Adam into different predictions. Not a test.
"""
import torch
import torch.nn.functional as F


def main(G: int = 4, B: int = 32):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(f'{G} folds, batch {B}: grouped convolution equal to per-fold F.conv2d, bit for bit?')
    for what, (C, O, k, pad, H) in [('STSTNet stream (3 maps)', (3, 3, 3, 2, 28)), ('STSTNet stream (8 maps)', (3, 8, 3, 2, 28)),
                                    ('OFF-ApexNet conv 1', (1, 6, 5, 2, 28)), ('OFF-ApexNet conv 2', (6, 16, 5, 2, 14))]:
        x = torch.randn(G, B, C, H, H, requires_grad=True)
        w = torch.randn(G, O, C, k, k, requires_grad=True)
        b = torch.randn(G, O, requires_grad=True)
        ys = [F.conv2d(x[g], w[g], b[g], padding=pad) for g in range(G)]
        gy = torch.randn(G, *ys[0].shape)
        ref = [torch.autograd.grad(y, (x, w, b), gy[g]) for g, y in enumerate(ys)]
        yg = F.conv2d(x.transpose(0, 1).reshape(B, G * C, H, H), w.reshape(G * O, C, k, k), b.reshape(-1), padding=pad, groups=G)
        yg = yg.reshape(B, G, O, *yg.shape[2:]).transpose(0, 1)
        grads = torch.autograd.grad(yg, (x, w, b), gy)
        same = [all(torch.equal(yg[g], ys[g]) for g in range(G))] + [all(torch.equal(grads[i][g], ref[g][i][g]) for g in range(G)) for i in range(3)]
        print(f'  {what:26s} forward {same[0]!s:5s}  grad input {same[1]!s:5s}  grad weight {same[2]!s:5s}  grad bias {same[3]!s:5s}')


if __name__ == '__main__':
    main()
