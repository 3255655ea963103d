// The Redis Cluster hash slot of a key: CRC16 (XMODEM) of the key, or of its hash tag, modulo
// 16384. From cluster-key-slot, the package ioredis routes its own commands with, so our
// transactions (routing.ts) and ioredis agree on where a key lives.
//
// cluster-key-slot 1.1.1 parts from Redis on one kind of key only: one whose first `{` is followed
// at once by `}` and that has a later `}` (`a{}b{c}`: Redis hashes the whole key, cluster-key-slot
// `b{c`). Every key keys.ts builds with a hash tag opens with a non-empty one, so none is of that
// kind.
// Imports cluster-key-slot only.

/// <reference path="./untyped-modules.d.ts" />
import calculateSlot from "cluster-key-slot";

export function hashSlot(key: string): number {
  return calculateSlot(key);
}
