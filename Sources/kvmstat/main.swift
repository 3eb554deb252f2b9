import KVMBuiltins
import KVMStatApp

// kvmstat: the built-in architectures, sources and formats, and the program.
KVMStat.main(plugins: Builtins.plugins)
