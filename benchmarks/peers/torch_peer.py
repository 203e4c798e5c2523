"""PyTorch on the CPU: nn.Sequential, torch.optim, a standard training loop."""

import time

import numpy as np

from .common import OPTIMIZERS, initial_params, peer_threads, predict_result, summarize


def run(config, data, opts):
    import torch
    from torch import nn

    torch.set_num_threads(peer_threads(opts))
    torch.manual_seed(opts.seed)
    modules = []
    for W, b in initial_params(config.sizes, opts.seed):
        linear = nn.Linear(*W.shape)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(W.T.copy()))
            linear.bias.copy_(torch.from_numpy(b))
        modules += [linear, nn.ReLU()]
    model = nn.Sequential(*modules[:-1])
    hp = OPTIMIZERS[opts.optimizer]
    if hp["kind"] == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=hp["lr"],
                                     betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"])
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=hp["lr"], momentum=hp["momentum"])
    loss_fn = nn.CrossEntropyLoss()
    X = torch.from_numpy(data["X_train"])
    y = torch.from_numpy(data["y_train"])
    n, batch = X.shape[0], config.batch_size

    def epoch():
        model.train()
        perm = torch.randperm(n)
        for start in range(0, n, batch):
            idx = perm[start:start + batch]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(X[idx]), y[idx])
            loss.backward()
            optimizer.step()
        return float(loss.detach())

    seconds = []
    for _ in range(1 + opts.epochs):
        start = time.perf_counter()
        last_loss = epoch()
        seconds.append(time.perf_counter() - start)

    def predict(X):
        with torch.no_grad():
            return model(torch.from_numpy(X)).argmax(dim=1).numpy()

    model.eval()
    result = summarize(seconds)
    result.update(last_batch_loss=last_loss,
                  accuracy=float(np.mean(predict(data["X_test"]) == data["y_test"])),
                  torch_threads=torch.get_num_threads(),
                  torch_blas=[x.strip() for x in torch.__config__.show().replace(",", "\n")
                              .splitlines() if "BLAS_INFO" in x or "MKL-DNN" in x])
    result.update(predict_result(lambda: predict(data["X_predict"]), opts.repeats))
    return result
