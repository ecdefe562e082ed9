import ArgumentParser
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// `ferry exec-as --user U [--group G] -- PROGRAM ARGS…`: drops privileges, then execs the program.
///
/// posix_spawn cannot change the user of the child, so the master spawns `command` backends through
/// this trampoline when it runs as root with `[master].user` set.
struct ExecAs: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exec-as", abstract: "Drop to a user, then run a program (used by the master).",
        shouldDisplay: false)

    @Option var user: String
    @Option var group: String?
    @Argument(parsing: .captureForPassthrough) var command: [String]

    func run() throws {
        let argv = command.first == "--" ? Array(command.dropFirst()) : command
        guard let program = argv.first else { throw ValidationError("exec-as needs a program to run") }
        try Privileges.drop(user: user, group: group)
        let cArguments = argv.map { strdup($0) } + [nil]
        execvp(program, cArguments)
        printError("ferry exec-as: cannot run \(program): \(String(cString: strerror(errno)))")
        throw ExitCode(127)
    }
}
