/* placeholder until the module lands */
typedef int cr_shard_placeholder;
