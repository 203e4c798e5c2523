"""A training run for the reliability tests, started in a subprocess.

Usage: python _train_script.py OUT.npz EPOCHS [--checkpoint CK] [--resume CK]
       [--slow-checkpoint-write N]

Prints "epoch K" after every epoch. ``--slow-checkpoint-write N`` makes the
N-th checkpoint write hang midway (after writing a few bytes of the temporary
file), so a test can kill the process during a checkpoint write.
"""

import argparse
import sys
import time

import numpy as np

import fastnn


def data():
    rng = np.random.default_rng(123)
    X = rng.random((3000, 64), dtype=np.float32)
    y = (X @ rng.standard_normal((64, 10))).argmax(axis=1)
    return X, y


def network():
    return fastnn.Network([fastnn.Dense(64, 256, "relu"), fastnn.Dropout(0.1),
                           fastnn.Dense(256, 256, "tanh"), fastnn.Dense(256, 10)],
                          seed=7, threads=1)


class Announce:
    def on_epoch_end(self, net, logs):
        print(f"epoch {logs['epoch'] + 1}", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("epochs", type=int)
    parser.add_argument("--checkpoint")
    parser.add_argument("--resume")
    parser.add_argument("--slow-checkpoint-write", type=int, default=0)
    args = parser.parse_args()
    if args.slow_checkpoint_write:
        writes = []
        real_savez = np.savez

        def slow_savez(handle, **arrays):
            writes.append(1)
            if len(writes) == args.slow_checkpoint_write:
                handle.write(b"PK\x03\x04 half-written checkpoint")
                handle.flush()
                print("writing", flush=True)
                time.sleep(60)
            return real_savez(handle, **arrays)

        np.savez = slow_savez
    X, y = data()
    net = network()
    net.fit(X, y, epochs=args.epochs, batch_size=8, optimizer=fastnn.Adam(1e-3), verbose=0,
            callbacks=[Announce(), fastnn.callbacks.StepLR(2, 0.5)],
            checkpoint=args.checkpoint, resume=args.resume)
    np.save(args.out, net.get_params())
    return 0


if __name__ == "__main__":
    sys.exit(main())
