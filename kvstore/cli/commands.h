// The `kvtier` subcommands. Each takes the full argv and returns the process exit code.
#pragma once

namespace kvtier::cli {

int ServeCommand(int argc, char** argv);
int StatCommand(int argc, char** argv);
int PutCommand(int argc, char** argv);
int GetCommand(int argc, char** argv);
int BenchCommand(int argc, char** argv);
int BenchDiskCommand(int argc, char** argv);
int ProfileCommand(int argc, char** argv);
int BenchCodecCommand(int argc, char** argv);
int BenchGpuCommand(int argc, char** argv);
int BenchClusterCommand(int argc, char** argv);
int BenchReuseCommand(int argc, char** argv);

}  // namespace kvtier::cli
