import Foundation
import Testing
import TestSupport

/// `fencectl config check` and `fencectl configure`, run as the real binary.
@Suite("fencectl config check and configure")
struct ConfigTests {
    let directory: TemporaryDirectory
    let key: String
    let busKey: String

    init() throws {
        directory = try TemporaryDirectory(prefix: "fr-config")
        key = try directory.write("fence_xvm.key", bytes: Array("fencectl-config-test-key".utf8))
        busKey = try directory.write("bus.key", bytes: [UInt8](repeating: 7, count: 64))
    }

    func fencectl(_ arguments: [String], input: String? = nil) async throws -> ProcessResult {
        try await Command.run([try Products.path("fencectl")] + arguments, input: input)
    }

    /// An identity key as an operator may make one without fencectl, and the trust directory
    /// beside it with a host and a router in it.
    func identity() async throws -> (key: String, trust: String) {
        let path = directory.path("identity.key")
        let made = try await Command.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", path])
        #expect(made.status == 0, "\(made)")
        _ = chmod(path, 0o600)
        let trust = directory.path("trust")
        for (role, name) in [("--host", "hv7"), ("--router", "r7")] {
            let made = try await fencectl(["keygen", role, name, directory.path("\(name).key"), "--trust-directory", trust])
            #expect(made.status == 0, "\(made)")
        }
        return (path, trust)
    }

    func object(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    @Test("a good file: valid, its unknown key warned about at its line, the settings in effect printed with defaults, also as JSON")
    func goodFile() async throws {
        let (identity, trust) = try await identity()
        let path = try directory.write("good.conf", """
            fence_virtd {
            \tlistener = "multicast";
            \tbackend = "amqp";
            }
            listeners { multicast { key_file = "\(key)"; interfce = "br0"; } }
            backends {
            \tamqp { url = "amqp://127.0.0.1:5672"; bus_key_file = "\(busKey)"; host_id = "hv7"; identity_key_file = "\(identity)"; trust_directory = "\(trust)"; }
            \tlibvirt { uri = "qemu:///system"; }
            }
            """)
        let result = try await fencectl(["config", "check", path])
        #expect(result.status == 0, "\(result)")
        #expect(result.output.contains("\(path): valid for fence-routerd (amqp backend) and fence-hostd"), "\(result)")
        #expect(result.output.contains("warning: \(path):5: listeners/multicast/interfce: unknown key, ignored"), "\(result)")
        for line in ["request_timeout = \"20\";", "hash = \"sha256\";", "address = \"225.0.0.12\";", "host_id = \"hv7\";",
                     "heartbeat_interval = \"1\";", "host_freshness = \"3\";", "state_directory = \"/var/lib/fence-router\";", "replay_memory = \"86400\";"] {
            #expect(result.output.contains(line), "\(line) missing from: \(result.output)")
        }

        let withOption = try await fencectl(["config", "check", "-f", path])
        #expect(withOption.status == 0 && withOption.output == result.output, "-f FILE as in the other subcommands: \(withOption)")
        let twoFiles = try await fencectl(["config", "check", "-f", path, "/etc/other.conf"])
        #expect(twoFiles.status != 0 && twoFiles.error.contains("two files"), "\(twoFiles)")

        let json = try object(try await fencectl(["config", "check", "--json", path]).output)
        #expect(json["valid"] as? Bool == true)
        #expect(json["daemons"] as? [String] == ["fence-routerd (amqp backend)", "fence-hostd"])
        let settings = try #require(json["settings"] as? [String: Any])
        let daemon = try #require(settings["fence_virtd"] as? [String: String])
        #expect(daemon["duplicate_window"] == "2")
        #expect(daemon["state_directory"] == "/var/lib/fence-router", "one state directory for the daemon, whatever its backend")
        let amqp = try #require((settings["backends"] as? [String: Any])?["amqp"] as? [String: String])
        #expect(amqp["sasl_mechanism"] == "PLAIN")
        #expect(amqp["router_id"]?.hasPrefix("router-") == true)
    }

    @Test("warnings for what the units' sandbox breaks (libvirt over ssh, a session libvirtd) and for a broker password every user may read")
    func sandboxAndPasswordWarnings() async throws {
        for (uri, warned) in [("qemu+ssh://root@hv2/system", true), ("qemu:///session", true), ("qemu:///system?socket=/run/user/1000/libvirt/libvirt-sock", true),
                              ("qemu:///system", false), ("test:///default", false)] {
            let path = try directory.write("uri.conf", "fence_virtd { listener = \"multicast\"; backend = \"libvirt\"; }\nlisteners { multicast { key_file = \"\(key)\"; } }\nbackends { libvirt { uri = \"\(uri)\"; } }\n")
            let result = try await fencectl(["config", "check", "--skip-files", path])
            #expect(result.status == 0, "\(result)")
            #expect(result.output.contains("libvirt uri \(uri):") == warned, "\(uri): \(result.output)")
            #expect(result.output.contains("protect-home-read-only.conf") == warned)
        }
        let withPassword = "fence_virtd { listener = \"multicast\"; backend = \"amqp\"; }\nlisteners { multicast { key_file = \"\(key)\"; } }\nbackends { amqp { url = \"amqp://fence:secret@127.0.0.1\"; bus_key_file = \"\(busKey)\"; } }\n"
        let open = try directory.write("open.conf", withPassword, mode: 0o644)
        #expect(try await fencectl(["config", "check", "--skip-files", open]).output.contains("every user may read it: chmod 600"))
        let closed = try directory.write("closed.conf", withPassword, mode: 0o600)
        #expect(!(try await fencectl(["config", "check", "--skip-files", closed]).output.contains("every user may read it")))
        let noPassword = try directory.write("nopassword.conf", withPassword.replacingOccurrences(of: "fence:secret@", with: "fence@"), mode: 0o644)
        #expect(!(try await fencectl(["config", "check", "--skip-files", noPassword]).output.contains("every user may read it")))
    }

    @Test("broken files: exit 1, the error names the file, line and key (or the file to create)")
    func brokenFiles() async throws {
        let cases: [(text: String, error: String)] = [
            ("fence_virtd {\n\tlistener = \"multicast\"\n\tbackend = \"libvirt\";\n}\n", ":3: fence_virtd/listener: missing ';' after the value"),
            ("fence_virtd { listener = \"multicast\"; backend = \"libvirt\"; }\nlisteners { multicast { key_file = \"\(key)\";\n port = \"99999\"; } }\nbackends { libvirt { uri = \"test:///default\"; } }\n",
             ":3: listeners/multicast/port: \"99999\" is not a whole number in 1…65535"),
            ("fence_virtd { listener = \"multicast\"; backend = \"libvirt\"; }\nlisteners { multicast { key_file = \"\(directory.path("absent.key"))\"; } }\nbackends { libvirt { uri = \"test:///default\"; } }\n",
             "absent.key (set at"),
            ("backends { libvirt { uri = \"test:///default\"; } }\n", "configures no daemon"),
        ]
        for (index, broken) in cases.enumerated() {
            let path = try directory.write("broken\(index).conf", broken.text)
            let result = try await fencectl(["config", "check", path])
            #expect(result.status == 1, "\(result)")
            #expect(result.error.contains(broken.error), "\(result)")
            let json = try object(try await fencectl(["config", "check", "--json", path]).output)
            #expect(json["valid"] as? Bool == false)
        }
        let open = try directory.write("open.key", bytes: [1, 2, 3], mode: 0o644)
        let wide = try directory.write("wide.conf", "fence_virtd { listener = \"tcp\"; backend = \"libvirt\"; }\nlisteners { tcp { key_file = \"\(open)\"; } }\nbackends { libvirt { uri = \"test:///default\"; } }\n")
        let result = try await fencectl(["config", "check", wide])
        #expect(result.status == 1)
        #expect(result.error.contains("chmod 600 \(open)"), "\(result)")
        #expect(try await fencectl(["config", "check", "--skip-files", wide]).status == 0, "--skip-files leaves the key alone")
    }

    @Test("configure: piped answers (a missing file is started from scratch on a yes), shown and written only after a yes; a no leaves the file as it was")
    func configure() async throws {
        let path = directory.path("fence_virt.conf")
        let (identity, trust) = try await identity()
        let answers = ["y", "", "", "", "", "br0", key, "amqp", "amqp://127.0.0.1:5672", "", "", "", busKey, identity, trust, "hv1,hv2", ""]
        let refused = try await fencectl(["configure", "-f", path], input: (answers + ["n"]).joined(separator: "\n") + "\n")
        #expect(refused.status == 1)
        #expect(!FileManager.default.fileExists(atPath: path))

        let written = try await fencectl(["configure", "-f", path], input: (answers + ["y"]).joined(separator: "\n") + "\n")
        #expect(written.status == 0, "\(written)")
        #expect(written.output.contains("=== Begin Configuration ==="))
        #expect(written.output.contains("Replace \(path) with the above [y/N]? y"), "piped answers are echoed: \(written.output)")
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        let check = try await fencectl(["config", "check", path])
        #expect(check.status == 0, "\(check)")
        #expect(check.output.contains("valid for fence-routerd (amqp backend) and fence-hostd"), "\(check)")
        #expect(check.output.contains("expected_hosts = \"hv1, hv2\";") || check.output.contains("expected_hosts = \"hv1,hv2\";"), "\(check)")

        // Run again on the file just written: every answer it gave is now the default.
        let again = try await fencectl(["configure", "-f", path], input: String(repeating: "\n", count: 16) + "y\n")
        #expect(again.status == 0, "\(again)")
        #expect(again.output.contains("Interface [br0]"), "\(again)")
        #expect(try String(contentsOfFile: path, encoding: .utf8).contains("interface = \"br0\";"))
    }

    @Test("the same answers piped to the real fence_virtd -c and to fencectl configure give the same settings",
          .enabled(if: TestEnvironment.shouldRun([.command("fence_virtd", package: "fence-virtd")])))
    func sameAsReference() async throws {
        try TestEnvironment.require([.command("fence_virtd", package: "fence-virtd")])
        let answers = ["y", "", "", "225.0.0.13", "1300", "br7", key, "libvirt", "qemu+tcp://127.0.0.1/system", "y"].joined(separator: "\n") + "\n"
        let reference = directory.path("reference.conf")
        let ours = directory.path("ours.conf")
        let written = try await Command.run(["fence_virtd", "-c", "-f", reference], input: answers)
        #expect(written.status == 0, "\(written)")
        #expect(try await fencectl(["configure", "-f", ours], input: answers).status == 0)
        let referenceSettings = try object(try await fencectl(["config", "check", "--json", reference]).output)["settings"] as? [String: Any]
        let ourSettings = try object(try await fencectl(["config", "check", "--json", ours]).output)["settings"] as? [String: Any]
        let expected = try #require(referenceSettings)
        #expect(NSDictionary(dictionary: expected).isEqual(to: try #require(ourSettings)), "\(expected) against \(String(describing: ourSettings))")
        #expect(((expected["listeners"] as? [String: Any])?["multicast"] as? [String: String])?["interface"] == "br7")
    }
}
