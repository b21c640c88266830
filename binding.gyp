{
  # Builds the same addon as CMakeLists.txt: sources and flags come from
  # native/build-config.json via scripts/build-config.js.
  "targets": [
    {
      "target_name": "attnode",
      "sources": ["<!@(node scripts/build-config.js sources)"],
      "include_dirs": ["<!(node scripts/build-config.js include)", "native"],
      "defines": ["<!@(node scripts/build-config.js defines)"],
      "cflags!": ["-fno-exceptions", "-O2", "-O3", "-std=gnu++17", "-std=gnu++14"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++14"],
      "cflags_cc": ["<!@(node scripts/build-config.js cflags)", "-fexceptions"],
      "ldflags": ["<!@(node scripts/build-config.js ldflags)"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "OTHER_CPLUSPLUSFLAGS": ["<!@(node scripts/build-config.js cflags)"]
      },
      "msvs_settings": {
        "VCCLCompilerTool": { "ExceptionHandling": 1, "AdditionalOptions": ["/std:c++17"] }
      }
    }
  ]
}
