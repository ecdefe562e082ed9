import ArgumentParser
import CSystemd
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// `ferry exec-as [--user U [--group G]] -- PROGRAM ARGS…`: drops privileges if asked, asks the
/// kernel to send SIGTERM when the master dies, then execs the program.
///
/// posix_spawn can do neither, so the master spawns `command` backends through this trampoline:
/// without it a backend outlived a master killed with -9 (the workers and built-in backends
/// watch their parent themselves; an arbitrary program cannot). The death signal is set after the
/// privilege drop (a credential change clears it) and survives the exec.
struct ExecAs: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exec-as", abstract: "Drop to a user, then run a program (used by the master).",
        shouldDisplay: false)

    @Option var user: String?
    @Option var group: String?
    @Argument(parsing: .captureForPassthrough) var command: [String]

    func run() throws {
        let argv = command.first == "--" ? Array(command.dropFirst()) : command
        guard let program = argv.first else { throw ValidationError("exec-as needs a program to run") }
        if let user { try Privileges.drop(user: user, group: group) }
        _ = ferry_set_parent_death_signal(SIGTERM)
        // The master may have died before the line above: then nobody would ever signal.
        if let master = ProcessInfo.processInfo.environment["FERRY_MASTER_PID"].flatMap(Int32.init),
            getppid() != master
        {
            throw ExitCode(1)
        }
        let cArguments = argv.map { strdup($0) } + [nil]
        execvp(program, cArguments)
        printError("ferry exec-as: cannot run \(program): \(String(cString: strerror(errno)))")
        throw ExitCode(127)
    }
}
