// Runs the Khronos glTF validator (npm package gltf-validator) on one glTF or GLB file and prints its report
// as JSON on stdout: node validate_gltf.js FILE
const fs = require("fs");
const path = require("path");
const validator = require("gltf-validator");

const file = process.argv[2];
validator
  .validateBytes(new Uint8Array(fs.readFileSync(file)), { uri: path.basename(file), maxIssues: 100 })
  .then((report) => process.stdout.write(JSON.stringify(report)))
  .catch((error) => {
    process.stderr.write(String(error) + "\n");
    process.exit(2);
  });
